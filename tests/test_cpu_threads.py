"""Training a Melody RNN on CPU runs one thread per op and splits each batch's rows over the cores, unless the
user set TensorFlow's thread variables. Each case is a fresh interpreter: thread pools are fixed once
TensorFlow's runtime starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json
from melodyflow.models.training.cpu_threads import use_one_thread_per_op
from melodyflow.models.network.fused_lstm import row_groups_here, usable_cores
said = use_one_thread_per_op()
print(json.dumps({"said": said, "groups": row_groups_here(128), "cores": usable_cores()}))
"""


def _probe(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TF_NUM_")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**environ, **env, "TF_CPP_MIN_LOG_LEVEL": "3"},
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_one_thread_per_op_and_a_row_group_per_core():
    got = _probe()
    assert got["said"] == f"1 thread(s) per op, {got['cores']} ops at once"
    assert got["groups"] == min(got["cores"], 128 // 8)


def test_the_users_thread_settings_are_kept():
    got = _probe(TF_NUM_INTRAOP_THREADS="2")
    assert got["said"] == "as set by TF_NUM_INTRAOP_THREADS=2"
    assert got["groups"] == max(1, got["cores"] // 2)
