"""Prefect flows and the CLI, run for real under prefect_test_harness."""

from __future__ import annotations

import json

import pytest

from flows.cli import build_parser, main
from flows.ingest import collection_name, ingest_corpus

pytestmark = pytest.mark.slow


def _artifacts_of(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))


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

    again = ingest_corpus(source=str(small_corpus), data_root=str(tmp_path / "data"), workers=1)
    assert again["status"] == "up_to_date" and again["counts"]["already_ingested"] == 9


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


def test_every_flag_is_documented():
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices.values():
        for opt in action._actions:
            assert opt.help, f"{action.prog} {opt.dest} has no help text"


def test_collection_name_is_the_source_basename():
    assert collection_name("/data/nottingham/") == "nottingham"
    assert collection_name("gs://bucket/midi") == "midi"
    assert collection_name("gs://bucket") == "bucket"
