"""Checkpoints of a training run: model, optimizer, step, learning rate and dropout random state.

They are written to RUN_DIR's local mirror and pushed through fsspec (data files before the
``checkpoint`` index that names them), and pulled from RUN_DIR when a run resumes on a new machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from melodyflow.models.training.run_dir import RunDir
from melodyflow.transforms.io import storage

CHECKPOINTS = "checkpoints"


class Checkpoints:
    def __init__(self, run_dir: RunDir, *, model, optimizer, step_var, lr_var, keep: int, resume: bool,
                 progress: Callable[[dict], None], resume_from: RunDir | None = None):
        """``resume_from``: where a run's checkpoints are read when ``run_dir`` (where they are written) is
        a non-chief worker's scratch directory."""
        import tensorflow as tf

        self.run_dir = run_dir
        self.step_var = step_var
        self.progress = progress
        # Dropout's random-stream state is checkpointed too: a resumed run then draws the same masks as
        # one that never stopped, which (with the replayed batches) makes kill-and-resume reproducible.
        rng_states = {layer.name: layer.seed_generator.state for layer in model.layers
                      if getattr(layer, "seed_generator", None) is not None}
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var,
                                              learning_rate=lr_var, rng=rng_states)
        self.resume_from = resume_from
        if resume:
            (resume_from or run_dir).pull(CHECKPOINTS)
        elif self._has_checkpoints():
            raise ValueError(f"{run_dir.url} already holds checkpoints; resume it or choose a new RUN_DIR")
        self.manager = tf.train.CheckpointManager(self.checkpoint, run_dir.local_path(CHECKPOINTS),
                                                  max_to_keep=keep)
        self.saved_at: int | None = None

    def _has_checkpoints(self) -> bool:
        local = self.run_dir.local_path(CHECKPOINTS)
        if os.path.isdir(local) and os.listdir(local):
            return True
        return bool(self.run_dir.remote and storage.list_dir(self.run_dir.remote_url(CHECKPOINTS)))

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore_latest(self, *, partial: bool = False) -> str | None:
        """Restore the newest checkpoint (also its learning rate); ``None`` when there is none."""
        import tensorflow as tf

        path = self.manager.latest_checkpoint
        if path is None and self.resume_from is not None:
            path = tf.train.latest_checkpoint(self.resume_from.local_path(CHECKPOINTS))
        if path is not None:
            status = self.checkpoint.restore(path)
            if partial:
                status.expect_partial()
        return path

    def save(self) -> str:
        step = int(self.step_var.numpy())
        path = self.manager.save(checkpoint_number=step)
        self.run_dir.push(CHECKPOINTS, last=("checkpoint",))
        self.saved_at = step
        self.progress({"event": "checkpoint", "step": step, "path": path})
        return path
