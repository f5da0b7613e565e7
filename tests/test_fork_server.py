"""The parser template: forked children behave like started ones, and nothing outlives its owner."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from melodyflow.transforms.sandbox import fork_template
from melodyflow.transforms.sandbox.fork_template import ParserTemplate, TemplateUnavailable, fork_child
from melodyflow.transforms.sandbox.isolated_worker import CallTimedOut, IsolatedWorker, Limits, RemoteError, WorkerCrashed

pytestmark = pytest.mark.skipif(not fork_template.SUPPORTED, reason="parser templates need Linux")


def _mark_template_prepared():
    os.environ["MELODYFLOW_TEST_TEMPLATE_PID"] = str(os.getpid())


def _template_pid_seen_by_child():
    return os.environ.get("MELODYFLOW_TEST_TEMPLATE_PID"), os.getppid(), os.getpid()


def _sleep(seconds):
    time.sleep(seconds)
    return "slept"


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def _allocate(mb):
    return len(bytearray(mb * 1024 * 1024))


def _gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether ``pid`` has ended (a zombie counts: it runs nothing) within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def test_forked_children_are_prepared_limited_and_restarted_by_the_template():
    with ParserTemplate([_mark_template_prepared], start_now=True) as template:
        with IsolatedWorker(Limits(timeout_s=2, memory_mb=1024), template=template.address) as worker:
            prepared_in, parent, first = worker.call(_template_pid_seen_by_child)
            assert worker.forked and prepared_in == str(parent) and parent != os.getpid()
            with pytest.raises(RemoteError) as err:
                worker.call(int, "x")
            assert err.value.reason == "parse_error"
            with pytest.raises(CallTimedOut):
                worker.call(_sleep, 30)
            assert _gone(first)  # killed through the template
            _, same_parent, second = worker.call(_template_pid_seen_by_child)
            assert (same_parent, worker.forked) == (parent, True) and second != first
            with pytest.raises(WorkerCrashed) as crash:
                worker.call(os._exit, 7)
            assert crash.value.reason == "crashed" and "exit code 7" in str(crash.value)
            with pytest.raises(WorkerCrashed) as killed:
                worker.call(_segfault)
            assert "exit code -11" in str(killed.value)
            with pytest.raises(RemoteError) as oom:
                worker.call(_allocate, 2048)
            assert oom.value.reason == "out_of_memory"
            assert worker.call(_allocate, 16) == 16 * 1024 * 1024
            child = worker.call(os.getpid)
        assert _gone(child)  # closing the worker ends its child


def test_the_template_starts_on_the_first_request_only():
    with ParserTemplate([_mark_template_prepared]) as unused:
        time.sleep(0.2)
        assert not unused.started
    with ParserTemplate([_mark_template_prepared]) as template:
        assert not template.started
        with IsolatedWorker(Limits(timeout_s=5, memory_mb=1024), template=template.address) as worker:
            prepared_in, parent, _ = worker.call(_template_pid_seen_by_child)
            assert template.started and worker.forked and prepared_in == str(parent)


def test_a_worker_outlives_its_template_by_starting_its_own_parser():
    with ParserTemplate(start_now=True) as template:
        with IsolatedWorker(Limits(timeout_s=5, memory_mb=1024), template=template.address) as worker:
            child = worker.call(os.getpid)
            template_pid = worker.call(os.getppid)
            os.kill(template_pid, signal.SIGKILL)
            assert _gone(child)  # the kernel ends the children of a dead template
            assert worker.call(_sleep, 0) == "slept"
            assert not worker.forked
        with pytest.raises(TemplateUnavailable):
            fork_child(template.address, 512, timeout_s=5)


def test_the_end_of_the_job_ends_the_template_its_children_and_its_socket():
    with ParserTemplate(start_now=True) as template:
        address = template.address
        worker = IsolatedWorker(Limits(timeout_s=5, memory_mb=1024), template=address)
        child, template_pid = worker.call(os.getpid), worker.call(os.getppid)
    assert _gone(child) and _gone(template_pid)
    with pytest.raises(TemplateUnavailable):
        fork_child(address, 512, timeout_s=5)
    worker.close()


def _connect_as_nobody(address: str) -> int:
    """Exit status of a child that drops to user ``nobody`` and asks the template for a parser:
    0 refused, 1 served."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                fork_child(address, 512, timeout_s=10)
                code = 1
            except TemplateUnavailable:
                code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_the_template_serves_only_its_own_user():
    with ParserTemplate(start_now=True) as template:
        assert _connect_as_nobody(template.address) == 0
        child, _ = fork_child(template.address, 512)
        child.kill()
        assert child.wait(10) == -signal.SIGKILL
        child.close()


def test_a_killed_driver_takes_its_template_along(tmp_path):
    driver = textwrap.dedent("""
        import os, sys
        from melodyflow.transforms.sandbox.fork_template import ParserTemplate, fork_child
        template = ParserTemplate(start_now=True).__enter__()
        child, channel = fork_child(template.address, 512)
        print(template._proc.pid, child.pid, template.address.lstrip("\\0"), flush=True)
        os.kill(os.getpid(), 9)
    """)
    out = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120)
    template_pid, child_pid, name = out.stdout.split()
    assert _gone(int(template_pid)) and _gone(int(child_pid))
    with pytest.raises(TemplateUnavailable):  # an abstract socket leaves nothing behind
        fork_child("\0" + name, 512, timeout_s=5)


@pytest.mark.parametrize("with_scores", [True, False], ids=["abc_and_midi", "small_midi_only"])
def test_ingestion_forks_its_parsers_from_one_template_only_when_needed(tmp_path, monkeypatch, with_scores):
    import midi_factory
    from support import write_corpus
    from melodyflow.transforms.sandbox import isolated_worker
    from melodyflow.transforms.ingest.batches import plan_ingest
    from melodyflow.transforms.ingest.files import IngestSettings
    from melodyflow.transforms.ingest.job import run_ingest_pipeline
    from melodyflow.transforms.beam.runners import RunnerConfig

    forks, templates = [], []
    real_fork_child, real_enter = isolated_worker.fork_child, ParserTemplate.__enter__

    def counting_fork_child(*args, **kwargs):  # one worker runs in this process: count its requests
        forks.append(real_fork_child(*args, **kwargs))
        return forks[-1]

    def recording_enter(self):
        templates.append(self)
        return real_enter(self)

    monkeypatch.setattr(isolated_worker, "fork_child", counting_fork_child)
    monkeypatch.setattr(ParserTemplate, "__enter__", recording_enter)
    files = {f"t{i}.mid": midi_factory.random_midi(i) for i in range(3)}
    if with_scores:
        files["book.abc"] = midi_factory.ABC_TUNEBOOK.encode()
    plan = plan_ingest(str(write_corpus(tmp_path / "corpus", files)), str(tmp_path / "data"),
                       IngestSettings(collection="c"))
    report = run_ingest_pipeline(plan, RunnerConfig(workers=1))
    assert report["counts"]["failed"] == 0 and report["counts"]["converted"] == len(files)
    assert len(templates) == 1 and templates[0].started == with_scores
    assert len(forks) == (1 if with_scores else 0)
