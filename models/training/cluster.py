"""This process's place in a multi-worker training cluster (``TF_CONFIG``), and where it may write.

With ``MultiWorkerMirroredStrategy`` every worker runs the same loop on its share of each batch and the
gradients are summed across workers, so all of them hold the same weights.  Only the chief writes the run:
checkpoints, TensorBoard summaries and the bundle.  The others still save checkpoints (saving mirrored
variables is a collective step every worker must take), into a scratch directory of their own that is
removed when they finish; they resume from the chief's checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterRole:
    workers: int = 1
    index: int = 0
    task_type: str = "worker"

    @property
    def is_chief(self) -> bool:
        """TF's rule: the ``chief`` task if the cluster has one, else worker 0."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0
                                             and not self._has_chief)

    _has_chief: bool = False

    def describe(self) -> str:
        if self.workers == 1:
            return "single process"
        return f"{self.task_type} {self.index} of a {self.workers}-task cluster" + (" (chief)" if self.is_chief else "")


def cluster_role(environ: dict[str, str] | None = None) -> ClusterRole:
    """The role ``TF_CONFIG`` gives this process (a single process when it names no cluster)."""
    config = json.loads((environ if environ is not None else os.environ).get("TF_CONFIG", "") or "{}")
    cluster = config.get("cluster", {})
    tasks = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    if not tasks:
        return ClusterRole()
    task = config.get("task", {})
    return ClusterRole(workers=tasks, index=int(task.get("index", 0)), task_type=str(task.get("type", "worker")),
                       _has_chief=bool(cluster.get("chief")))


def scratch_run_dir() -> str:
    """Where a non-chief worker writes what TensorFlow insists on writing; see :func:`remove_scratch`."""
    return tempfile.mkdtemp(prefix="melodyflow-worker-")


def remove_scratch(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
