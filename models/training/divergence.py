"""The divergence guard: decides when a training step must not count, and when to give up.

A non-finite loss, or a loss above ``spike_factor`` times its running average (after a short settling
period), means the step's update must be thrown away: the loop restores the last checkpoint and lowers
the learning rate.  After ``max_recoveries`` such recoveries the guard stops the run with an error that
names the step and the learning rate, because more of the same would only waste the budget.
"""

from __future__ import annotations

import math

SETTLING_STEPS = 20  # spikes are judged only this many steps after a (re)start: the average needs data
EMA_WEIGHTS = (0.95, 0.05)  # running average: old, new


class DivergenceError(RuntimeError):
    """Training kept diverging after the allowed number of recoveries."""


class DivergenceGuard:
    def __init__(self, *, max_recoveries: int, spike_factor: float, lr_decay: float, start_step: int):
        self.max_recoveries = max_recoveries
        self.spike_factor = spike_factor
        self.lr_decay = lr_decay
        self.start_step = start_step
        self.events: list[dict] = []
        self._ema: float | None = None

    def check(self, step: int, loss: float, learning_rate: float) -> dict | None:
        """``None`` when the step at global ``step`` (before it) with ``loss`` is fine; else the event.

        Raises :class:`DivergenceError` when this divergence is one more than allowed.
        """
        finite = math.isfinite(loss)
        spiked = (finite and self._ema is not None and step > self.start_step + SETTLING_STEPS
                  and loss > self.spike_factor * self._ema)
        if finite and not spiked:
            self._ema = loss if self._ema is None else EMA_WEIGHTS[0] * self._ema + EMA_WEIGHTS[1] * loss
            return None
        reason, recovery = ("loss spike" if finite else "non-finite loss"), len(self.events) + 1
        if recovery > self.max_recoveries:
            raise DivergenceError(
                f"training diverged at step {step + 1} ({reason}, loss {loss}) after "
                f"{self.max_recoveries} recoveries; lower the learning rate (now {learning_rate:g}) or "
                "check the dataset")
        return {"step": step + 1, "loss": loss, "reason": reason, "recovery": recovery}

    def lowered(self, learning_rate: float) -> float:
        return learning_rate * self.lr_decay

    def recovered(self, event: dict, restored_step: int, learning_rate: float) -> dict:
        """Record a recovery (the loop restored ``restored_step`` with ``learning_rate``); restart the average."""
        event = {**event, "restored_step": restored_step, "learning_rate": learning_rate}
        self.events.append(event)
        self._ema = None
        return event
