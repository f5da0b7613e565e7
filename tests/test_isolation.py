import os
import time

import pytest

from melodyflow.transforms.sandbox.isolated_worker import CallTimedOut, IsolatedWorker, Limits, RemoteError, WorkerCrashed


def _sleep(seconds):
    time.sleep(seconds)
    return "slept"


def _die():
    os._exit(7)


def _allocate(mb):
    return len(bytearray(mb * 1024 * 1024))


def _raise():
    raise KeyError("boom")


def test_results_errors_timeouts_crashes_and_memory_cap():
    with IsolatedWorker(Limits(timeout_s=2, memory_mb=512)) as worker:
        assert worker.call(_sleep, 0) == "slept"
        with pytest.raises(RemoteError) as err:
            worker.call(_raise)
        assert err.value.reason == "parse_error" and "KeyError" in str(err.value)
        started = time.monotonic()
        with pytest.raises(CallTimedOut) as timeout:
            worker.call(_sleep, 30)
        assert timeout.value.reason == "timeout"
        assert time.monotonic() - started < 10
        assert worker.call(_sleep, 0) == "slept"  # restarted after the timeout
        with pytest.raises(WorkerCrashed) as crash:
            worker.call(_die)
        assert crash.value.reason == "crashed" and "exit code 7" in str(crash.value)
        with pytest.raises(RemoteError) as oom:
            worker.call(_allocate, 2048)
        assert oom.value.reason == "out_of_memory"
        assert worker.call(_allocate, 16) == 16 * 1024 * 1024


def test_limits_are_validated():
    with pytest.raises(ValueError):
        Limits(timeout_s=0)
    with pytest.raises(ValueError):
        Limits(memory_mb=10)


def _slow_prepare():
    time.sleep(0.8)  # longer than the calls' time limit below
    os.environ["PREPARED_TIMES"] = str(int(os.environ.get("PREPARED_TIMES", "0")) + 1)


def _prepared_times():
    return os.getpid(), os.environ.get("PREPARED_TIMES")


def test_ensure_prepares_each_child_once_outside_the_time_limit():
    with IsolatedWorker(Limits(timeout_s=0.5, memory_mb=512)) as worker:
        worker.ensure(_slow_prepare)
        worker.ensure(_slow_prepare)
        first_pid, times = worker.call(_prepared_times)
        assert times == "1"
        with pytest.raises(WorkerCrashed):
            worker.call(_die)
        pid, times = worker.call(_prepared_times)
        assert pid != first_pid and times is None  # a restarted child is not prepared yet...
        worker.ensure(_slow_prepare)
        assert worker.call(_prepared_times) == (pid, "1")  # ...until asked again


def test_a_failing_preparation_is_a_crash_and_the_worker_recovers():
    with IsolatedWorker(Limits(timeout_s=2, memory_mb=512)) as worker:
        with pytest.raises(WorkerCrashed):
            worker.ensure(_die)
        with pytest.raises(WorkerCrashed):
            worker.ensure(_raise)
        assert worker.call(_sleep, 0) == "slept"
