"""``melodyflow import-magenta SOURCE OUT``: a Magenta Melody RNN (.mag bundle or run directory) as a bundle."""

from __future__ import annotations

import argparse

from melodyflow.flows.cli.command import Command
from melodyflow.flows.cli.options import config_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a .mag file, or a Magenta run directory (then --config is required)")
    parser.add_argument("out", help="new directory or URL for the bundle (an existing non-empty one is refused)")
    parser.add_argument("--config", default=None, choices=config_names(),
                        help="the Magenta config the model was trained with: required for a run directory, and "
                             "for a bundle whose generator id is not one of Magenta's melody_rnn configs")
    parser.add_argument("--hparams", default=None, metavar="SPEC",
                        help="training hparams to record for fine-tuning (layer sizes always come from the "
                             "checkpoint; default: Magenta's defaults for the config)")


def check(args: argparse.Namespace) -> None:
    """Every input error (bad file, unknown id, missing tensor, shape, occupied OUT) before a flow run exists."""
    from melodyflow.models.bundles.magenta_import import check_target, plan_import

    check_target(args.out, plan_import(args.source, args.config, args.hparams))


def run(args: argparse.Namespace) -> dict:
    from melodyflow.flows.import_magenta import import_magenta_bundle

    return import_magenta_bundle(source=args.source, out=args.out, config=args.config, hparams=args.hparams)


def show(result: dict) -> None:
    verb = "already imported" if result["status"] == "up_to_date" else "imported"
    sizes = "x".join(str(s) for s in result["rnn_layer_sizes"])
    print(f"{result['source']}: {verb} as {result['config']} ({sizes} LSTM, {result['tensor_naming']} names)")
    print(f"  bundle      {result['bundle']}")
    if result["self_check_max_abs_prob_diff"] is not None:
        print(f"  self-check  max |dp| {result['self_check_max_abs_prob_diff']:.1e} against Magenta's equations")


COMMAND = Command(
    name="import-magenta",
    summary="import a Magenta Melody RNN (.mag bundle or run directory) as a melodyflow bundle",
    description="Read a Magenta generator bundle (.mag, from melody_rnn_generate --save_generator_bundle) or a "
                "melody_rnn_train run directory, map its weights onto melodyflow's model and write "
                "OUT/bundles/v0001 with OUT/bundles/LATEST, which generate and train accept like any bundle. "
                "basic_rnn, mono_rnn and lookback_rnn import; attention_rnn is refused (its attention differs "
                "from melodyflow's). Nothing is written unless the whole import succeeds.",
    add_arguments=add_arguments, check=check, run=run, show=show)
