"""Beam runner selection: one place that turns ``--runner`` and ``--runner-option`` into options.

The ``direct`` runner is Beam's FnApiRunner chosen explicitly: Beam's default ``DirectRunner`` first
tries to download the Prism runner, which offline costs time and logs a scary exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from melodyflow.transforms.beam.worker_deaths import fail_jobs_whose_worker_dies
from melodyflow.transforms.io.storage import StorageError

RUNNERS = ("direct", "dask", "dataflow")

# Friendly option names accepted per runner, mapped to Beam's own flag names.
_ALIASES = {
    "dask": {"scheduler": "dask_client_address", "address": "dask_client_address"},
    "dataflow": {},
    "direct": {},
}
_DATAFLOW_REQUIRED = ("project", "region", "temp_location")


def bind_grpc_to_loopback() -> None:
    """Make every gRPC server this process starts listen on 127.0.0.1 instead of all interfaces.

    Beam's FnApiRunner in multi-processing mode serves its control, data, state and logging planes
    on ``[::]:0`` — unauthenticated endpoints open to the network. Its workers dial ``localhost``, so
    loopback is all they need.
    """
    import grpc

    if getattr(grpc.server, "_melodyflow_loopback", False):
        return
    make_server = grpc.server

    def server(*args, **kwargs):
        srv = make_server(*args, **kwargs)
        add_port = srv.add_insecure_port

        def add_insecure_port(address: str) -> int:
            host, _, port = address.rpartition(":")
            if host in ("[::]", "0.0.0.0", ""):
                address = f"127.0.0.1:{port}"
            return add_port(address)

        srv.add_insecure_port = add_insecure_port
        return srv

    server._melodyflow_loopback = True  # type: ignore[attr-defined]  # marks grpc.server as already wrapped
    grpc.server = server


class RunnerConfigError(ValueError):
    """The runner name or its options are invalid; the message says which and why."""


def parse_runner_options(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["k=v", ...]`` → dict, with a clear error for anything malformed."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise RunnerConfigError(f"--runner-option expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


@dataclass(frozen=True)
class RunnerConfig:
    """Which Beam runner to use, with how many local workers and which extra options."""

    runner: str = "direct"
    workers: int = 1
    options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runner not in RUNNERS:
            raise RunnerConfigError(f"unknown runner {self.runner!r}; choose one of {', '.join(RUNNERS)}")
        if self.workers < 1:
            raise RunnerConfigError("workers must be at least 1")
        if self.runner == "dataflow":
            missing = [k for k in _DATAFLOW_REQUIRED if k not in self.beam_flags_dict()]
            if missing:
                raise RunnerConfigError(
                    "the dataflow runner needs --runner-option " + ", ".join(f"{k}=..." for k in missing)
                )

    def beam_flags_dict(self) -> dict[str, str]:
        aliases = _ALIASES[self.runner]
        return {aliases.get(k, k): v for k, v in self.options.items()}

    def beam_flags(self) -> list[str]:
        flags = [f"--{k}={v}" for k, v in sorted(self.beam_flags_dict().items())]
        if self.runner == "direct":
            mode = "multi_processing" if self.workers > 1 else "in_memory"
            flags += [f"--direct_num_workers={self.workers}", f"--direct_running_mode={mode}"]
        elif self.runner == "dataflow" and "max_num_workers" not in self.beam_flags_dict():
            flags.append(f"--max_num_workers={self.workers}")
        return flags

    @property
    def workers_on_this_machine(self) -> bool:
        """Whether every worker runs on the driver's machine: the direct runner, or Dask's local
        cluster (no scheduler address given)."""
        local_dask = self.runner == "dask" and "dask_client_address" not in self.beam_flags_dict()
        return self.runner == "direct" or local_dask

    def pipeline_options(self):
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(self.beam_flags(), save_main_session=False)

    def make_runner(self):
        if self.runner == "direct":
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            bind_grpc_to_loopback()
            fail_jobs_whose_worker_dies()
            return FnApiRunner()
        if self.runner == "dask":
            try:
                from apache_beam.runners.dask.dask_runner import DaskRunner
            except ImportError as exc:  # pragma: no cover - depends on the extra
                raise RunnerConfigError("the dask runner needs `pip install melodyflow[dask]`") from exc

            workers = self.workers

            class LoopbackDaskRunner(DaskRunner):
                """Without a scheduler address, start a local cluster bound to 127.0.0.1 (dashboard
                included; Dask's own default serves the dashboard on every interface)."""

                def run_pipeline(self, pipeline, options):
                    from apache_beam.runners.dask.dask_runner import DaskOptions

                    dask_options = options.view_as(DaskOptions)
                    if dask_options.address:
                        return super().run_pipeline(pipeline, options)
                    from dask.distributed import LocalCluster

                    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address="127.0.0.1:0")
                    dask_options.address = cluster.scheduler_address
                    try:
                        result = super().run_pipeline(pipeline, options)
                    except BaseException:
                        cluster.close()
                        raise
                    result.local_cluster = cluster
                    return result

            return LoopbackDaskRunner()
        from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

        return DataflowRunner()


def finish(result) -> None:
    """Wait for a pipeline result; close the Dask client the Dask runner opened for it."""
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()
        cluster = getattr(result, "local_cluster", None)
        if cluster is not None:
            cluster.close()


# How a worker's StorageError reads inside the runner's error: the last traceback line, maybe followed by
# Beam's note of the step it ran in.
_STORAGE_FAILURE = re.compile(r"StorageError: (.+?)(?: \[while running '[^\n]*'\])?$", re.MULTILINE)


def storage_failure_in(text: str) -> str | None:
    """The message of a ``StorageError`` reported inside a runner's error text, if there is one."""
    found = _STORAGE_FAILURE.findall(text)
    return found[-1].strip() if found else None


def run(pipeline) -> None:
    """Run ``pipeline`` to the end.  A storage failure in a worker reaches the driver as the runner's own
    error, with the worker's traceback as its text (multi-processing, Dask): it is raised as the one-line
    ``StorageError`` it was, so callers treat an outage alike on every runner."""
    try:
        finish(pipeline.run())
    except Exception as exc:  # noqa: BLE001 - re-raised unless it carries a storage failure
        failure = storage_failure_in(str(exc))
        if failure is None:
            raise
        raise StorageError(failure) from None
