import pytest

from melodyflow.models.hparams import HParams, HParamsError, debug_hparams, default_hparams, parse_hparams


def test_magenta_defaults_per_config():
    basic = default_hparams("basic_rnn")
    assert (basic.batch_size, basic.rnn_layer_sizes, basic.dropout_keep_prob, basic.clip_norm,
            basic.learning_rate, basic.attn_length) == (128, (128, 128), 0.5, 5.0, 0.001, 0)
    attention = default_hparams("attention_rnn")
    assert (attention.attn_length, attention.clip_norm) == (40, 3.0)


@pytest.mark.parametrize("text", ['{"batch_size": 64, "rnn_layer_sizes": [64, 64]}',
                                  "batch_size=64,rnn_layer_sizes=[64,64]",
                                  " batch_size = 64 , rnn_layer_sizes = [64, 64] "])
def test_json_and_magenta_forms_are_accepted(text):
    hp = HParams().override(text)
    assert hp.batch_size == 64 and hp.rnn_layer_sizes == (64, 64)


def test_unknown_keys_and_bad_values_are_clear_errors():
    with pytest.raises(HParamsError, match="unknown hparams batchsize"):
        HParams().override("batchsize=3")
    with pytest.raises(HParamsError, match="rnn_layer_sizes"):
        HParams().override("rnn_layer_sizes=64")
    with pytest.raises(HParamsError, match="dropout_keep_prob"):
        HParams().override('{"dropout_keep_prob": 0}')
    with pytest.raises(HParamsError, match="key=value"):
        parse_hparams("batch_size")
    with pytest.raises(HParamsError, match="JSON"):
        parse_hparams("{bad json")
    with pytest.raises(HParamsError, match="integer"):
        HParams().override({"batch_size": 1.5})


def test_debug_preset_is_tiny():
    hp = debug_hparams("attention_rnn")
    assert hp.rnn_layer_sizes == (16, 16) and hp.batch_size == 8 and 0 < hp.attn_length < 40
