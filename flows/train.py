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


def resolve_hparams(config: str, preset: str, overrides: str | None):
    from melodyflow.models.hparams import debug_hparams, default_hparams

    base = debug_hparams(config) if preset == "debug" else default_hparams(config)
    return base.override(overrides)


@task(name="train-melody-rnn", cache_policy=NONE)
def train_task(data_root: str, run_dir: str, settings, hparams) -> dict:
    from melodyflow.models.quiet_import import import_tensorflow
    from melodyflow.models.training.loop import train  # TensorFlow import only in the task that needs it

    import_tensorflow()

    logger = get_run_logger()
    progress_id = cast(UUID, create_progress_artifact(  # a sync call returns its value
        progress=0.0, key=artifact_key("training-progress", settings.config),
        description=f"Training steps done of {settings.num_training_steps}"))

    def on_progress(event: dict) -> None:
        kind = event["event"]
        if kind == "step":
            update_progress_artifact(progress_id, progress=100.0 * event["step"] / event["total"])
            m = event["metrics"]
            logger.info("step %d/%d loss %.4f accuracy %.3f", event["step"], event["total"], m["loss"], m["accuracy"])
        elif kind == "eval":
            logger.info("eval at step %d: loss %.4f perplexity %.3f accuracy %.3f", event["step"],
                        event["metrics"]["loss"], event["metrics"]["perplexity"], event["metrics"]["accuracy"])
        elif kind == "divergence":
            logger.warning("Divergence at step %d (%s, loss %s): restored step %d, learning rate now %g",
                           event["step"], event["reason"], event["loss"], event["restored_step"],
                           event["learning_rate"])
        elif kind == "resumed":
            logger.info("Resuming from %s at step %d", event["checkpoint"], event["step"])

    logger.info("Training %s for %d steps with hparams %s → %s", settings.config, settings.num_training_steps,
                hparams.to_dict(), run_dir)
    result = train(data_root, run_dir, settings, hparams, progress=on_progress)
    update_progress_artifact(progress_id, progress=100.0)
    return result.to_dict()


@flow(name="train-melody-model")
def train_melody_model(
    data_root: str,
    run_dir: str,
    config: str = DEFAULT_CONFIG,
    hparams: str | None = None,
    preset: str = "magenta",
    num_training_steps: int = TrainSettings.num_training_steps,
    eval_every: int = TrainSettings.eval_every,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = TrainSettings.keep_checkpoints,
    seed: int = TrainSettings.seed,
) -> dict:
    """Train ``config`` on ``DATA_ROOT/melodies/<config>``; checkpoints, TensorBoard and bundles in ``run_dir``.

    Resumes from RUN_DIR's latest checkpoint when there is one.
    """
    settings = TrainSettings(config=config, num_training_steps=num_training_steps, eval_every=eval_every,
                             checkpoint_every=checkpoint_every or eval_every, keep_checkpoints=keep_checkpoints,
                             seed=seed)
    hp = resolve_hparams(config, preset, hparams)
    result = train_task(data_root, run_dir, settings, hp)
    rows = []
    for split, metrics in (("train", result["train_metrics"]), ("eval", result["eval_metrics"])):
        if metrics:
            rows.append({"split": split, **{k: round(v, 4) for k, v in metrics.items()}})
    create_table_artifact(key=artifact_key("training-metrics", config), table=rows,
                          description=f"Latest metrics at step {result['step']}")
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
            f"- **Steps:** {result['start_step']} → {result['step']}",
            f"- **Bundle:** {link(storage.join(result['bundle'], 'bundle.json'), result['bundle'])}",
            f"- **TensorBoard:** `tensorboard --logdir {run_dir}`",
            f"- **Divergence recoveries:** {len(result['divergence_events'])}",
        ]),
        description="Where the trained model is")
    result["loss_curve"] = curve_url
    return result
