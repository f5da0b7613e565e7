"""Prefect flows and the CLI, run for real under prefect_test_harness."""

from __future__ import annotations

import json

import pytest

from melodyflow.flows.cli import build_parser, main
from melodyflow.flows.ingest import collection_name, ingest_corpus



def _artifacts_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


@pytest.mark.slow
def test_ingest_flow_publishes_counts_and_locations(prefect_harness, small_corpus, tmp_path):
    state = ingest_corpus(source=str(small_corpus), data_root=str(tmp_path / "data"), workers=1,
                          return_state=True)
    summary = state.result()
    assert summary["status"] == "ingested"
    assert summary["counts"]["found"] == 9 and summary["counts"]["sequences"] == 9
    artifacts = {a.key: a for a in _artifacts_of(state.state_details.flow_run_id)}
    table = artifacts["ingest-counts"]
    rows = {r["count"]: r["value"] for r in json.loads(table.data)}
    assert rows["found"] == 9 and rows["duplicates"] == 1 and rows["converted"] == 8
    markdown = artifacts["ingest-summary"].data
    assert summary["batch_id"] in markdown and "dead_letters" in markdown
    assert artifacts["ingest-progress"].data == 100.0  # live progress reached the UI

    again = ingest_corpus(source=str(small_corpus), data_root=str(tmp_path / "data"), workers=1)
    assert again["status"] == "up_to_date" and again["counts"]["already_ingested"] == 9


@pytest.mark.slow
def test_cli_ingest_json_is_one_object_on_stdout(prefect_harness, small_corpus, tmp_path, capsys):
    code = main(["ingest", str(small_corpus), str(tmp_path / "data"), "--workers", "1", "--json",
                 "--collection", "mine"])
    assert code == 0
    out = capsys.readouterr().out
    result = json.loads(out)
    c = result["counts"]
    assert c["found"] == c["converted"] + c["duplicates"] + c["failed"] == 9
    assert result["report"].endswith("report.json")
    report = json.loads(open(result["report"]).read())
    assert report["collection"] == "mine" and report["counts"]["sequences"] == 9

    code = main(["ingest", str(small_corpus), str(tmp_path / "data"), "--workers", "1"])
    assert code == 0
    table = capsys.readouterr().out
    assert "up to date" in table and "already_ingested" in table


def test_cli_reports_usage_errors_clearly(capsys, tmp_path):
    assert main(["ingest", str(tmp_path / "missing"), str(tmp_path / "d"), "--runner", "dataflow"]) == 2
    assert "dataflow runner needs" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path), str(tmp_path / "d"), "--runner-option", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_every_flag_is_documented():
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices.values():
        for opt in action._actions:
            assert opt.help, f"{action.prog} {opt.dest} has no help text"


@pytest.mark.slow
def test_collection_name_is_the_source_basename():
    assert collection_name("/data/nottingham/") == "nottingham"
    assert collection_name("gs://bucket/midi") == "midi"
    assert collection_name("gs://bucket") == "bucket"


@pytest.mark.slow
def test_dataset_flow_and_cli_publish_counters_and_charts(prefect_harness, tmp_path, capsys):
    import midi_factory
    from support import write_corpus
    from melodyflow.flows.dataset import build_melody_dataset

    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(10)})
    data = str(tmp_path / "data")
    assert main(["ingest", str(corpus), data, "--workers", "1", "--json"]) == 0
    capsys.readouterr()
    state = build_melody_dataset(data_root=data, config="attention_rnn", eval_ratio=0.3, workers=1,
                                 return_state=True)
    summary = state.result()
    assert summary["status"] == "built" and summary["info"]["input_size"] == 74
    artifacts = {a.key: a for a in _artifacts_of(state.state_details.flow_run_id)}
    rows = json.loads(artifacts["dataset-counters-attention-rnn"].data)
    by_name = {r["counter"]: r for r in rows}
    assert by_name["examples_written"]["train"] == summary["info"]["counts"]["train"]
    assert "sequences_drums_only" in by_name  # zero counters are reported too
    charts = artifacts["dataset-charts-attention-rnn"]  # the picture itself, so the UI shows it for local data too
    assert charts.type == "markdown" and "](data:image/png;base64," in charts.data and "file://" not in charts.data
    assert (tmp_path / "data" / "melodies" / "attention_rnn" / "charts.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["dataset", data, "--config", "attention_rnn", "--eval-ratio", "0.3", "--workers", "1",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["status"] == "up_to_date" and again["info"]["counts"] == summary["info"]["counts"]

    assert main(["dataset", str(tmp_path / "empty"), "--workers", "1"]) == 2
    assert "melodyflow ingest" in capsys.readouterr().err
    assert main(["dataset", data, "--transpose-range", "5:1"]) == 2


@pytest.mark.slow
def test_train_flow_reports_progress_metrics_curve_and_bundle(prefect_harness, tmp_path, capsys):
    import midi_factory
    from support import write_corpus
    from melodyflow.flows.train import train_melody_model

    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in range(12)})
    data, run = str(tmp_path / "data"), str(tmp_path / "run")
    assert main(["ingest", str(corpus), data, "--workers", "1", "--json"]) == 0
    assert main(["dataset", data, "--workers", "1", "--eval-ratio", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["info"]["counts"]["eval"] > 0

    assert main(["train", data, run, "--hparams", "batchsize=3", "--preset", "debug"]) == 2
    assert "unknown hparams batchsize" in capsys.readouterr().err
    assert main(["train", data, run, "--resume", "--preset", "debug"]) == 2
    assert "no checkpoints" in capsys.readouterr().err

    state = train_melody_model(data_root=data, run_dir=run, preset="debug", num_training_steps=12, eval_every=6,
                               hparams='{"batch_size": 4}', return_state=True)
    result = state.result()
    assert result["step"] == 12 and result["bundle"].endswith("v0001")
    artifacts = {a.key: a for a in _artifacts_of(state.state_details.flow_run_id)}
    assert artifacts["training-progress-basic-rnn"].data == 100.0
    rows = json.loads(artifacts["training-metrics-basic-rnn"].data)
    assert {r["split"] for r in rows} == {"train", "eval"} and all("perplexity" in r for r in rows)
    curve = artifacts["loss-curve-basic-rnn"]
    assert curve.type == "markdown" and "](data:image/png;base64," in curve.data and "file://" not in curve.data
    assert result["bundle"] in artifacts["training-summary-basic-rnn"].data
    assert (tmp_path / "run" / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["train", data, run, "--preset", "debug", "--hparams", "batch_size=4",
                 "--num-training-steps", "15", "--eval-every", "5", "--resume", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert (resumed["start_step"], resumed["step"]) == (12, 15) and resumed["bundle"].endswith("v0002")


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_skips_them_all(prefect_harness, tmp_path):
    import midi_factory
    from support import write_corpus
    from melodyflow.flows.pipeline import melody_pipeline

    # Seeds 39 and 48 hash into the eval split and yield melodies, which the evaluation stage needs.
    seeds = [*range(10), 39, 48]
    corpus = write_corpus(tmp_path / "corpus", {f"s{i}.mid": midi_factory.melodic_midi(i) for i in seeds})
    kwargs = dict(source=str(corpus), data_root=str(tmp_path / "data"), workers=1, num_training_steps=8,
                  hparams='{"batch_size": 4, "rnn_layer_sizes": [8]}')
    first = melody_pipeline(**kwargs)
    assert first["ingest"]["status"] == "ingested" and first["dataset"]["status"] == "built"
    assert first["training"]["status"] == "trained" and first["training"]["step"] == 8
    second = melody_pipeline(**kwargs)
    assert second["ingest"]["status"] == "up_to_date" and second["dataset"]["status"] == "up_to_date"
    assert second["training"]["status"] == "up_to_date"
    assert second["training"]["bundle"] == first["training"]["bundle"]
    generated = first["generation"]
    assert generated["status"] == "generated" and generated["counts"]["ok"] >= 1
    assert generated["counts"]["outputs"] == 4 * generated["counts"]["ok"]
    assert second["generation"]["status"] == "up_to_date"
    assert (tmp_path / "data" / "primers").is_dir()
    assert first["evaluation"]["status"] == "evaluated" and second["evaluation"]["status"] == "up_to_date"
    assert first["evaluation"]["heldout"]["loss"] > 0 and first["evaluation"]["generated"]["count"] == 64
