"""Which Keras network a set of hparams builds: the Melody RNN or the Music Transformer."""

from __future__ import annotations

from melodyflow.models.hparams import AnyHParams, TransformerHParams


def build_network(input_size: int, num_classes: int, hparams: AnyHParams):
    if isinstance(hparams, TransformerHParams):
        from melodyflow.models.network.music_transformer import build_transformer

        return build_transformer(input_size, num_classes, hparams)
    from melodyflow.models.network.melody_rnn import build_model

    return build_model(input_size, num_classes, hparams)
