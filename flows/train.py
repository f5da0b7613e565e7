"""Prefect flow ``train_melody_model``: train on a melody dataset, report progress and metrics."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)
from prefect.cache_policies import NONE

from melodyflow.flows.reporting import artifact_key, link, loss_curve_png, markdown_image
from melodyflow.flows.settings import DEFAULT_CONFIG
from melodyflow.models.training.loop import TrainSettings
from melodyflow.transforms.io import storage


def resolve_hparams(config: str, preset: str | None, overrides: str | None, init_from: str | None = None):
    """The run's hparams: a preset plus overrides, or, when fine-tuning, the parent's plus overrides."""
    from melodyflow.models.hparams import debug_hparams, default_hparams

    if init_from:
        from melodyflow.models.training.fine_tune import fine_tune_hparams, open_parent

        if preset not in (None, "magenta"):
            raise ValueError("--preset does not apply with --init-from: the parent's hparams are used")
        return fine_tune_hparams(open_parent(init_from), overrides)
    base = debug_hparams(config) if preset == "debug" else default_hparams(config)
    return base.override(overrides)


def _progress_percent(event: dict) -> float:
    """Steps done of the step limit, or time spent of the time budget, whichever is further."""
    done = [event["step"] / event["total"]] if event.get("total") else []
    if event.get("time_budget_s"):
        done.append(event.get("elapsed_s", 0.0) / event["time_budget_s"])
    return 100.0 * min(1.0, max(done, default=0.0))


@task(name="train-melody-rnn", cache_policy=NONE)
def train_task(data_root: str, run_dir: str, settings, hparams) -> dict:
    from melodyflow.models.quiet_import import import_tensorflow
    from melodyflow.models.training.loop import train  # TensorFlow import only in the task that needs it

    import_tensorflow()

    logger = get_run_logger()
    limits = [f"{settings.num_training_steps} steps"] if settings.num_training_steps else []
    limits += [f"{settings.time_budget_s:g} s"] if settings.time_budget_s else []
    limits += [f"an eval loss of at most {settings.stop_at_eval_loss:g}"] if settings.stop_at_eval_loss else []
    progress_id = cast(UUID, create_progress_artifact(  # a sync call returns its value
        progress=0.0, key=artifact_key("training-progress", settings.config),
        description=f"Training progress towards {' or '.join(limits)}"))

    def on_progress(event: dict) -> None:
        kind = event["event"]
        if kind == "step":
            update_progress_artifact(progress_id, progress=_progress_percent(event))  # type: ignore[arg-type]
            m = event["metrics"]
            logger.info("step %d/%s loss %.4f accuracy %.3f", event["step"], event["total"] or "-", m["loss"],
                        m["accuracy"])
        elif kind == "eval":
            logger.info("eval at step %d: loss %.4f perplexity %.3f accuracy %.3f", event["step"],
                        event["metrics"]["loss"], event["metrics"]["perplexity"], event["metrics"]["accuracy"])
        elif kind == "divergence":
            logger.warning("Divergence at step %d (%s, loss %s): restored step %d, learning rate now %g",
                           event["step"], event["reason"], event["loss"], event["restored_step"],
                           event["learning_rate"])
        elif kind == "resumed":
            logger.info("Resuming from %s at step %d", event["checkpoint"], event["step"])
        elif kind == "initialized":
            logger.info("Fine-tuning: weights from %s, fresh optimizer, step 0", event["parent"])

    logger.info("Training %s for %s with hparams %s → %s", settings.config, " or ".join(limits),
                hparams.to_dict(), run_dir)
    result = train(data_root, run_dir, settings, hparams, progress=on_progress)
    logger.info("CPU threads: %s", result.threads)
    if result.stop_reason == "time_budget":
        logger.info("Time budget of %g s reached at step %d", settings.time_budget_s, result.step)
    elif result.stop_reason == "eval_loss_reached":
        logger.info("Eval loss %.4f reached the target %g at step %d", result.eval_metrics["loss"],
                    settings.stop_at_eval_loss, result.step)
    update_progress_artifact(progress_id, progress=100.0)  # type: ignore[arg-type]
    return result.to_dict()


@flow(name="train-melody-model")
def train_melody_model(
    data_root: str,
    run_dir: str,
    config: str = DEFAULT_CONFIG,
    hparams: str | None = None,
    preset: str = "magenta",
    num_training_steps: int | None = TrainSettings.num_training_steps,
    eval_every: int = TrainSettings.eval_every,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = TrainSettings.keep_checkpoints,
    seed: int = TrainSettings.seed,
    time_budget_s: float | None = None,
    init_from: str | None = None,
    stop_at_eval_loss: float | None = None,
) -> dict:
    """Train ``config`` on ``DATA_ROOT/melodies/<config>``; checkpoints, TensorBoard and bundles in ``run_dir``.

    Resumes from RUN_DIR's latest checkpoint when there is one.  ``time_budget_s`` stops training after
    that many seconds of this run (then a last eval, checkpoint and bundle); ``num_training_steps=None``
    leaves the budget as the only limit.  ``init_from`` (a bundle or RUN_DIR) fine-tunes its weights.
    ``stop_at_eval_loss`` stops at the first evaluation (every ``eval_every`` steps) whose loss is at most that.
    """
    settings = TrainSettings(config=config, num_training_steps=num_training_steps, eval_every=eval_every,
                             checkpoint_every=checkpoint_every or eval_every, keep_checkpoints=keep_checkpoints,
                             seed=seed, time_budget_s=time_budget_s, init_from=init_from,
                             stop_at_eval_loss=stop_at_eval_loss)
    hp = resolve_hparams(config, preset, hparams, init_from)
    result = train_task(data_root, run_dir, settings, hp)
    rows = []
    for split, metrics in (("train", result["train_metrics"]), ("eval", result["eval_metrics"])):
        if metrics:
            rows.append({"split": split, **{k: round(v, 4) for k, v in metrics.items()}})
    create_table_artifact(key=artifact_key("training-metrics", config), table=rows,
                          description=f"Latest metrics at step {result['step']}")
    if not result["writes_run"]:  # a non-chief worker of a multi-worker cluster: the chief reports the run
        get_run_logger().info("Trained as %s: the chief writes the run directory and its bundle", result["role"])
        return result
    curve_url = storage.join(run_dir, "loss_curve.png")
    curve = loss_curve_png(result["history"], f"{config} — {run_dir}")
    storage.write_bytes(curve_url, curve)
    create_markdown_artifact(key=artifact_key("loss-curve", config),
                             markdown=markdown_image(curve, "train and eval loss") + "\n\n" + link(curve_url),
                             description="Train and eval loss")
    create_markdown_artifact(
        key=artifact_key("training-summary", config),
        markdown="\n".join([
            f"# Training `{config}`", "",
            f"- **Steps:** {result['start_step']} → {result['step']}"
            + (f" (time budget of {result['time_budget_s']:g} s reached)" if result["stop_reason"] == "time_budget"
               else f" (eval loss of at most {stop_at_eval_loss:g} reached)"
               if result["stop_reason"] == "eval_loss_reached" else ""),
            *_lineage_lines(result.get("parent")),
            f"- **Bundle:** {link(storage.join(result['bundle'], 'bundle.json'), result['bundle'])}",
            f"- **TensorBoard:** `tensorboard --logdir {run_dir}`",
            f"- **Divergence recoveries:** {len(result['divergence_events'])}",
        ]),
        description="Where the trained model is")
    result["loss_curve"] = curve_url
    return result


def _lineage_lines(parent: dict | None) -> list[str]:
    if not parent:
        return []
    loss = f", eval loss {parent['eval_loss']:.4f}" if parent.get("eval_loss") is not None else ""
    return [f"- **Fine-tuned from:** {link(parent['url'])} ({parent['config']}, step "
            f"{parent['step']}{loss}, dataset `{parent.get('dataset_fingerprint')}`)"]
