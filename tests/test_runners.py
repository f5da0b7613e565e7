"""Runner choice: the Dask runner produces the DirectRunner's exact records; Dataflow options are valid."""

from __future__ import annotations

from pathlib import Path

import pytest

import midi_factory
from support import write_corpus
from melodyflow.transforms.ingest.batches import plan_ingest
from melodyflow.transforms.melodies.job import run_dataset_pipeline
from melodyflow.transforms.ingest.files import IngestSettings
from melodyflow.transforms.ingest.job import run_ingest_pipeline
from melodyflow.transforms.melodies.configs import get_config
from melodyflow.transforms.melodies.dataset import DatasetSettings, plan_dataset
from melodyflow.transforms.beam.runners import RunnerConfig, RunnerConfigError, parse_runner_options


def _build(source, data_root, runner: RunnerConfig):
    plan = plan_ingest(str(source), str(data_root), IngestSettings(collection="c"))
    report = run_ingest_pipeline(plan, runner)
    dplan = plan_dataset(str(data_root), DatasetSettings(config=get_config("lookback_rnn"), eval_ratio=0.3))
    result = run_dataset_pipeline(dplan, runner)
    files = {p.relative_to(data_root).as_posix(): p.read_bytes() for p in Path(data_root).rglob("*")
             if p.is_file() and (".tfrecord-" in p.name or p.name == "manifest.jsonl")}
    return report, result, files


@pytest.mark.slow
def test_dask_runner_writes_exactly_what_the_direct_runner_writes(tmp_path):
    from dask.distributed import LocalCluster

    files = {f"s{i:02d}.mid": midi_factory.melodic_midi(i) for i in range(16)}
    files["dup.mid"] = files["s01.mid"]
    files["bad.mid"] = b"not midi"
    corpus = write_corpus(tmp_path / "corpus", files)
    direct = _build(corpus, tmp_path / "direct", RunnerConfig(workers=1))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        dask = _build(corpus, tmp_path / "dask", RunnerConfig(runner="dask", workers=2,
                                                             options={"scheduler": cluster.scheduler_address}))
    assert dask[0]["counts"] == direct[0]["counts"]
    assert direct[0]["counts"]["converted"] == 16 and direct[0]["counts"]["duplicates"] == 1
    assert dask[1]["info"]["counts"] == direct[1]["info"]["counts"] and sum(direct[1]["info"]["counts"].values()) > 0
    assert dask[2] == direct[2]  # every shard and manifest byte-identical


def test_dataflow_options_are_passed_through_and_validated():
    from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions

    config = RunnerConfig(runner="dataflow", workers=50, options=parse_runner_options(
        ["project=my-proj", "region=europe-west1", "temp_location=gs://b/tmp", "machine_type=n2-standard-4"]))
    options = config.pipeline_options()
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("my-proj", "europe-west1", "gs://b/tmp")
    workers = options.view_as(WorkerOptions)
    assert workers.max_num_workers == 50 and workers.machine_type == "n2-standard-4"
    with pytest.raises(RunnerConfigError, match="region=..., temp_location=..."):
        RunnerConfig(runner="dataflow", options={"project": "p"})


def test_direct_and_dask_flags():
    assert "--direct_running_mode=multi_processing" in RunnerConfig(workers=2).beam_flags()
    assert "--direct_running_mode=in_memory" in RunnerConfig(workers=1).beam_flags()
    assert RunnerConfig(runner="dask", options={"scheduler": "tcp://h:8786"}).beam_flags() == [
        "--dask_client_address=tcp://h:8786"]
    with pytest.raises(RunnerConfigError, match="unknown runner"):
        RunnerConfig(runner="flink")
