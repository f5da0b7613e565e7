"""``melodyflow evaluate DATA_ROOT``: held-out metrics of a model and how melodies compare with a dataset."""

from __future__ import annotations

import argparse

from melodyflow.flows.cli.command import Command, UsageError
from melodyflow.flows.cli.options import add_config_arg, at_least


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_root", help="the DATA_ROOT holding melodies/<config>/")
    add_config_arg(parser, "of the dataset (and model)")
    parser.add_argument("--bundle", default=None, metavar="BUNDLE_OR_RUN_DIR",
                        help="a bundle or RUN_DIR: its held-out metrics on the eval split, and (without "
                             "--generated) melodies sampled from it are judged")
    parser.add_argument("--generated", default=None, metavar="GLOB_OR_DIR",
                        help="MIDI files to judge (glob, directory/prefix or one file); each file's melody is "
                             "taken by generate's primer rule")
    parser.add_argument("--num-samples", type=at_least(1), default=None, metavar="N",
                        help="melodies sampled from --bundle, each continuing the first bar of an eval melody "
                             "(default: 64)")
    parser.add_argument("--num-steps", type=at_least(1), default=None, metavar="N",
                        help="judged steps per sample (default: the lengths of randomly drawn eval melodies)")
    parser.add_argument("--seed", type=int, default=0, help="seed for primers, lengths and sampling (default: 0)")
    parser.add_argument("--output", default=None, metavar="OUT",
                        help="where the report goes (default: DATA_ROOT/evaluations/<config>-<hash of the inputs>)")


def check(args: argparse.Namespace) -> None:
    from melodyflow.flows.evaluate import DEFAULT_SAMPLES
    from melodyflow.models.bundles.bundle import check_bundle
    from melodyflow.models.evaluation.samples import SampleSettings
    from melodyflow.transforms.melodies.dataset import open_dataset

    if args.bundle is None and args.generated is None:
        raise UsageError("give --bundle BUNDLE_OR_RUN_DIR, --generated GLOB_OR_DIR, or both")
    if args.generated is not None and (args.num_samples is not None or args.num_steps is not None):
        raise UsageError("--num-samples and --num-steps shape the samples drawn from --bundle; with "
                         "--generated the given files are judged instead")
    num_samples = DEFAULT_SAMPLES if args.num_samples is None else args.num_samples
    SampleSettings(num_samples=num_samples, num_steps=args.num_steps, seed=args.seed)  # validates
    open_dataset(args.data_root, args.config)
    if args.bundle is not None:
        config = check_bundle(args.bundle)["config"]
        if config != args.config:
            raise UsageError(f"--bundle {args.bundle} is a {config} model; evaluate it against a {config} dataset "
                             f"with --config {config}")


def run(args: argparse.Namespace) -> dict:
    from melodyflow.flows.evaluate import DEFAULT_SAMPLES, evaluate_melodies

    num_samples = DEFAULT_SAMPLES if args.num_samples is None else args.num_samples
    return evaluate_melodies(data_root=args.data_root, config=args.config, bundle=args.bundle,
                             generated=args.generated, num_samples=num_samples, num_steps=args.num_steps,
                             seed=args.seed, output=args.output)


def show(result: dict) -> None:
    gen = result["generated"]
    if "heldout" in result:
        h = result["heldout"]
        print(f"Held-out ({h['melodies']} eval melodies): loss {h['loss']:.4f} nats/step, perplexity "
              f"{h['perplexity']:.3f}, accuracy {h['accuracy']:.3f}, event accuracy {h['event_accuracy']:.3f}, "
              f"no-event accuracy {h['no_event_accuracy']:.3f}")
    print(f"Judged {gen['count']} melodies: similarity {gen['similarity']:.3f}, copied.fraction "
          f"{gen['copied']['fraction']:.3f} (longest copied span {gen['copied']['max_steps']} steps)")
    width = max(len(n) for n in gen["features"])
    print(f"  {'feature':<{width}}  {'judged':>9}  {'reference':>9}  {'overlap':>7}  {'KL':>7}")
    for name, c in gen["features"].items():
        mean = f"{c['mean']:9.3f}" if isinstance(c["mean"], float) else f"{'-':>9}"
        ref = f"{c['reference_mean']:9.3f}" if isinstance(c["reference_mean"], float) else f"{'-':>9}"
        kl = f"{c['kl']:7.3f}" if c["kl"] is not None else f"{'-':>7}"
        print(f"  {name:<{width}}  {mean}  {ref}  {c['overlap']:7.3f}  {kl}")
    for failure in gen["failed"]:
        print(f"  not judged: {failure['name']}: {failure['error']}")
    print(f"  report  {result['report']}")


COMMAND = Command(
    name="evaluate",
    summary="held-out metrics of a model and how its (or any) melodies compare with a dataset",
    description="Judge melodies against DATA_ROOT/melodies/<config>: per-melody features compared with the eval "
                "split's (overlap area and KL divergence of their densities, one similarity in [0, 1]) and a "
                "copy check against the train split. With --bundle: the model's held-out metrics and samples "
                "from it; with --generated: any MIDI files. Writes OUT/evaluation.json, OUT/report.md and "
                "charts. Definitions: docs/evaluation.md.",
    add_arguments=add_arguments, check=check, run=run, show=show)
