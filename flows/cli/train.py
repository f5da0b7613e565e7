"""``melodyflow train DATA_ROOT RUN_DIR``: a Melody RNN trained on a dataset, as checkpoints and bundles."""

from __future__ import annotations

import argparse

from melodyflow.flows.cli import checks, output
from melodyflow.flows.cli.command import Command, UsageError
from melodyflow.flows.cli.options import (add_config_arg, add_setting, add_training_limit_args, at_least, config_for,
                                         float_where)
from melodyflow.models.training.loop import TrainSettings

HPARAMS_HELP = ("hyperparameter overrides as JSON ('{\"rnn_layer_sizes\":[64]}') or Magenta's form "
                "('batch_size=64,rnn_layer_sizes=[64,64]'); RNN keys: batch_size, rnn_layer_sizes, "
                "dropout_keep_prob, clip_norm, learning_rate, attn_length; music_transformer keys: batch_size, "
                "num_layers, num_heads, d_model, d_ff, dropout_rate, max_relative_distance, learning_rate, "
                "warmup_steps, clip_norm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_root", help="the DATA_ROOT holding melodies/<config>/")
    parser.add_argument("run_dir", help="where checkpoints, summaries and bundles go")
    add_config_arg(parser, "to train", from_parent=True)
    parser.add_argument("--hparams", default=None, metavar="SPEC", help=HPARAMS_HELP)
    parser.add_argument("--preset", choices=("magenta", "debug"), default=None,
                        help="base hparams: the config's defaults (Magenta's for the RNNs), or a tiny debug "
                             "model that trains in seconds (default: magenta)")
    parser.add_argument("--num-training-steps", type=at_least(1), default=None, metavar="N",
                        help=f"train until this global step (default: {TrainSettings.num_training_steps}; no "
                             "step limit with --time-budget)")
    add_setting(parser, "--eval-every", TrainSettings, "eval_every", type=at_least(1), metavar="N",
                help="evaluate on the eval split every N steps and at the end")
    parser.add_argument("--checkpoint-every", type=at_least(1), default=None, metavar="N",
                        help="save a checkpoint every N steps and at the end (default: --eval-every)")
    add_setting(parser, "--keep-checkpoints", TrainSettings, "keep_checkpoints", type=at_least(1), metavar="K",
                help="keep the last K checkpoints")
    add_setting(parser, "--seed", TrainSettings, "seed", type=int, help="random seed for weights and shuffling")
    parser.add_argument("--resume", action="store_true",
                        help="require an existing checkpoint to resume from (resuming is automatic "
                             "whenever RUN_DIR has one)")
    parser.add_argument("--stop-at-eval-loss", type=positive_loss, default=None, metavar="LOSS",
                        help="stop at the first evaluation (see --eval-every) whose held-out loss, in nats per "
                             "step, is at most LOSS; then checkpoint and export the bundle as at the end")
    add_training_limit_args(parser)


positive_loss = float_where(lambda v: 0 < v < float("inf"), "must be a positive loss in nats per step",
                            "positive_loss")


def check_hparams(config: str, preset: str | None, spec: str | None, init_from: str | None = None) -> None:
    """A bad ``--hparams`` is a usage error, found before Prefect or TensorFlow is imported."""
    from melodyflow.flows.train import resolve_hparams

    resolve_hparams(config, preset, spec, init_from)


def check(args: argparse.Namespace) -> None:
    args.config = config_for(args)
    check_hparams(args.config, args.preset, args.hparams, args.init_from)
    checks.trainable_dataset(args.data_root, args.config,
                             needs_eval="--stop-at-eval-loss" if args.stop_at_eval_loss else None)
    if args.init_from:  # another encoding or architecture: one line now, not a failed task later
        from melodyflow.flows.train import resolve_hparams
        from melodyflow.models.training.fine_tune import check_compatible, open_parent
        from melodyflow.transforms.melodies.dataset import open_dataset

        check_compatible(open_parent(args.init_from), args.config, open_dataset(args.data_root, args.config),
                         resolve_hparams(args.config, args.preset, args.hparams, args.init_from))
    checks.writable_data_root(args.run_dir, "RUN_DIR")
    if args.resume:
        from melodyflow.transforms.io import storage

        if not storage.list_dir(storage.join(args.run_dir, "checkpoints")):
            raise UsageError(f"--resume: {args.run_dir} has no checkpoints to resume from")


def run(args: argparse.Namespace) -> dict:
    from melodyflow.flows.train import train_melody_model

    steps = args.num_training_steps or (None if args.time_budget else TrainSettings.num_training_steps)
    return train_melody_model(
        data_root=args.data_root, run_dir=args.run_dir, config=args.config, hparams=args.hparams,
        preset=args.preset or "magenta", num_training_steps=steps, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, seed=args.seed,
        time_budget_s=args.time_budget, init_from=args.init_from, stop_at_eval_loss=args.stop_at_eval_loss)


COMMAND = Command(
    name="train",
    summary="train a melody model (RNN or Transformer) on a dataset built by `melodyflow dataset`",
    description="Train a Melody RNN or the Music Transformer (Keras, TensorFlow) on DATA_ROOT/melodies/<config>. "
                "Checkpoints, "
                "TensorBoard event files (RUN_DIR/train, RUN_DIR/eval) and versioned model bundles "
                "(RUN_DIR/bundles/vNNNN) go to RUN_DIR, which may be local, gs:// or s3://. A run resumes "
                "from RUN_DIR's latest checkpoint when there is one.",
    add_arguments=add_arguments, check=check, run=run, show=output.show_training)
