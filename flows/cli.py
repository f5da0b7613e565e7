"""The ``melodyflow`` command line: thin wrappers that run the Prefect flows and print summaries."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings

from melodyflow.transforms.melodies.configs import CONFIG_NAMES  # light: note-seq is imported only when encoding

EPILOG = """\
Paths may be local directories or fsspec URLs (gs://bucket/prefix, s3://bucket/prefix).
Runs use Prefect's ephemeral API unless PREFECT_API_URL points at a server; set
STORAGE_EMULATOR_HOST to use a GCS emulator for gs:// URLs.
"""


def _quiet_third_party_noise() -> None:
    # pretty_midi warns about every file with meta events on non-zero tracks; pydub about ffmpeg.
    warnings.filterwarnings("ignore", module="pretty_midi")
    warnings.filterwarnings("ignore", module="pydub")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


def _add_runner_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="parallel worker processes (default: the number of CPUs); on the direct "
                             "runner N>1 uses Beam's multi-processing mode")
    parser.add_argument("--runner", choices=("direct", "dask", "dataflow"), default="direct",
                        help="Beam runner for the data plane (default: direct, i.e. this machine)")
    parser.add_argument("--runner-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra runner option, repeatable: e.g. scheduler=tcp://host:8786 (dask); "
                             "project=..., region=..., temp_location=gs://... (dataflow)")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _add_training_limit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--time-budget", type=_positive_seconds, default=None, metavar="SECONDS",
                        help="stop training after this many seconds of this run (start-up included), then "
                             "evaluate, checkpoint and export a bundle; the summary gives the step reached")
    parser.add_argument("--init-from", default=None, metavar="BUNDLE_OR_RUN_DIR",
                        help="fine-tune: start from this bundle's weights (or a RUN_DIR's latest bundle) with a "
                             "fresh optimizer at step 0; same config and encoding required, architecture kept")


def _config_for(args: argparse.Namespace) -> str:
    """``--config``, else the --init-from parent's config, else basic_rnn; checks the parent early."""
    if not args.init_from:
        return args.config or "basic_rnn"
    from melodyflow.models.training.fine_tune import FineTuneError, open_parent

    parent = open_parent(args.init_from)
    if args.config and args.config != parent.config:
        raise FineTuneError(f"--init-from {parent.url} is a {parent.config} bundle, not {args.config}; "
                            f"train with --config {parent.config} or choose another bundle")
    return parent.config


def _add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with the result on stdout (logs stay on stderr)")


def _add_run_parser(sub) -> None:
    run = sub.add_parser("run", help="run the whole pipeline (default: on the built-in demo corpus)",
                         description="Run every stage end to end. With no arguments: build the demo "
                                     "corpus, ingest it into ./melodyflow-data.")
    run.add_argument("source", nargs="?", default=None,
                     help="corpus directory or URL (default: the demo corpus, built and cached)")
    run.add_argument("data_root", nargs="?", default="melodyflow-data",
                     help="where all outputs go (default: ./melodyflow-data)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="parallel worker processes (default: the number of CPUs)")
    run.add_argument("--config", default=None,
                     choices=CONFIG_NAMES,
                     help="model configuration for the dataset and training stages (default: basic_rnn, or "
                          "the --init-from bundle's)")
    run.add_argument("--num-training-steps", type=int, default=300, metavar="N",
                     help="training steps of the small demo model (2x64 LSTM, batch 32; music_transformer: "
                          "its defaults, 2 layers of 128, batch 8; default: 300)")
    _add_training_limit_args(run)
    run.add_argument("--primers", default=None, metavar="GLOB_OR_URL",
                     help="primer MIDI files for the generation stage (default: two-bar excerpts of the "
                          "corpus' first four MIDI files)")
    _add_json_arg(run)


def _add_train_parser(sub) -> None:
    train = sub.add_parser(
        "train", help="train a melody model (RNN or Transformer) on a dataset built by `melodyflow dataset`",
        description="Train a Melody RNN or the Music Transformer (Keras, TensorFlow) on "
                    "DATA_ROOT/melodies/<config>. Checkpoints, "
                    "TensorBoard event files (RUN_DIR/train, RUN_DIR/eval) and versioned model bundles "
                    "(RUN_DIR/bundles/vNNNN) go to RUN_DIR, which may be local, gs:// or s3://. A run "
                    "resumes from RUN_DIR's latest checkpoint when there is one.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("data_root", help="the DATA_ROOT holding melodies/<config>/")
    train.add_argument("run_dir", help="where checkpoints, summaries and bundles go")
    train.add_argument("--config", default=None,
                       choices=CONFIG_NAMES,
                       help="model configuration (default: basic_rnn, or the --init-from bundle's); "
                            "music_transformer trains on basic_rnn's dataset")
    train.add_argument("--hparams", default=None, metavar="SPEC",
                       help="hyperparameter overrides as JSON ('{\"rnn_layer_sizes\":[64]}') or Magenta's "
                            "form ('batch_size=64,rnn_layer_sizes=[64,64]'); RNN keys: batch_size, "
                            "rnn_layer_sizes, dropout_keep_prob, clip_norm, learning_rate, attn_length; "
                            "music_transformer keys: batch_size, num_layers, num_heads, d_model, d_ff, "
                            "dropout_rate, max_relative_distance, learning_rate, warmup_steps, clip_norm")
    train.add_argument("--preset", choices=("magenta", "debug"), default=None,
                       help="base hparams: the config's defaults (Magenta's for the RNNs), or a tiny debug "
                            "model that trains in seconds (default: magenta)")
    train.add_argument("--num-training-steps", type=int, default=None, metavar="N",
                       help="train until this global step (default: 20000; no step limit with --time-budget)")
    train.add_argument("--eval-every", type=int, default=500, metavar="N",
                       help="evaluate on the eval split every N steps and at the end (default: 500)")
    train.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                       help="save a checkpoint every N steps and at the end (default: --eval-every)")
    train.add_argument("--keep-checkpoints", type=int, default=5, metavar="K",
                       help="keep the last K checkpoints (default: 5)")
    train.add_argument("--seed", type=int, default=0, help="random seed for weights and shuffling (default: 0)")
    train.add_argument("--resume", action="store_true",
                       help="require an existing checkpoint to resume from (resuming is automatic "
                            "whenever RUN_DIR has one)")
    _add_training_limit_args(train)
    _add_json_arg(train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="melodyflow",
        description="MIDI corpora → NoteSequences → melody datasets → trained melody RNNs → music.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_run_parser(sub)

    ingest = sub.add_parser(
        "ingest", help="convert a MIDI/MusicXML/ABC corpus into NoteSequence TFRecord shards",
        description="Find .mid/.midi/.kar/.xml/.mxl/.abc files under SOURCE (recursively), convert new "
                    "ones to NoteSequences and write them as a new batch under DATA_ROOT/notesequences/. "
                    "Bad files are listed in DATA_ROOT/dead_letters/ and never stop the run. Re-running "
                    "only processes files not in a completed batch.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ingest.add_argument("source", help="corpus directory or URL prefix")
    ingest.add_argument("data_root", help="output root directory or URL")
    _add_runner_args(ingest)
    ingest.add_argument("--collection", default=None,
                        help="collection_name stored in each NoteSequence (default: SOURCE's base name)")
    ingest.add_argument("--max-file-mb", type=float, default=64.0, metavar="MB",
                        help="refuse files larger than this (default: 64)")
    ingest.add_argument("--max-notes", type=int, default=500_000, metavar="N",
                        help="refuse MIDI files with more note-on events than this, counted before "
                             "parsing (default: 500000)")
    ingest.add_argument("--file-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="give up on a file whose parsing takes longer (default: 60)")
    ingest.add_argument("--memory-limit-mb", type=int, default=4096, metavar="MB",
                        help="address-space cap of the parser process (default: 4096)")
    _add_json_arg(ingest)

    dataset = sub.add_parser(
        "dataset", help="extract melodies from ingested NoteSequences into train/eval TFRecords",
        description="Split every completed ingestion batch on tempo/time-signature changes, quantize, "
                    "extract monophonic melodies with Magenta's Melody RNN rules, encode them for a "
                    "config and write train/eval shards under DATA_ROOT/melodies/<config>/. The split "
                    "is a hash of each NoteSequence id, so it never changes as the corpus grows.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    dataset.add_argument("data_root", help="the DATA_ROOT given to `melodyflow ingest`")
    dataset.add_argument("--config", default="basic_rnn",
                         choices=CONFIG_NAMES,
                         help="Melody RNN configuration whose encoding to write (default: basic_rnn)")
    dataset.add_argument("--eval-ratio", type=float, default=0.1, metavar="R",
                         help="fraction of NoteSequences (by id hash) in the eval split (default: 0.1)")
    dataset.add_argument("--transpose-range", default="0:0", metavar="LO:HI",
                         help="also add copies transposed by LO..HI semitones, inclusive; copies whose "
                              "pitches leave 0-127 are dropped and counted (default: 0:0, none)")
    dataset.add_argument("--format", choices=("compact", "sequence-example"), default="compact",
                         help="compact (default): labels + sparse inputs, expanded by the trainer; "
                              "sequence-example: Magenta's dense tf.train.SequenceExample")
    dataset.add_argument("--keep-polyphonic-tracks", action="store_true",
                         help="take the highest note of a chord instead of discarding tracks with "
                              "simultaneous note starts (Magenta discards them)")
    dataset.add_argument("--force", action="store_true",
                         help="rebuild even if a completed dataset exists for the same inputs and settings")
    _add_runner_args(dataset)
    _add_json_arg(dataset)

    _add_train_parser(sub)

    gen = sub.add_parser(
        "generate", help="generate melodies from a trained bundle for every primer",
        description="Generate melodies from a bundle (or RUN_DIR's latest bundle) for every primer MIDI "
                    "file, in parallel: OUT/<primer-id>/<nnn>.mid, a piano-roll .png per output, a .wav "
                    "when FluidSynth and a General MIDI soundfont are installed, and OUT/index.json.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("bundle", help="a bundle directory/URL or a RUN_DIR (its latest bundle is used)")
    gen.add_argument("--primers", default=None, metavar="GLOB_OR_URL",
                     help="primer MIDI files: a glob, a directory/prefix (recursive) or one file")
    gen.add_argument("--primer-melody", default=None, metavar="EVENTS",
                     help='a primer as Magenta events, e.g. "[60,-2,62,-2]" (-2 no event, -1 note off); '
                          "with neither primer option, a single middle C")
    gen.add_argument("--output", required=True, metavar="OUT", help="output directory or URL")
    gen.add_argument("--num-outputs", type=int, default=16, metavar="N", help="melodies per primer (default: 16)")
    gen.add_argument("--num-steps", type=int, default=128, metavar="N",
                     help="total length in 16th-note steps, primer included (default: 128)")
    gen.add_argument("--temperature", type=float, default=1.0,
                     help="softmax temperature; >1 more random, <1 more conservative (default: 1.0)")
    gen.add_argument("--beam-size", type=int, default=1, help="beams kept per output (default: 1, plain sampling)")
    gen.add_argument("--branch-factor", type=int, default=1, help="branches per beam each iteration (default: 1)")
    gen.add_argument("--steps-per-iteration", type=int, default=1,
                     help="steps sampled per beam-search iteration (default: 1)")
    gen.add_argument("--qpm", type=float, default=None, help="tempo of the output (default: the primer's)")
    gen.add_argument("--seed", type=int, default=0, help="random seed; same inputs and seed, same outputs")
    gen.add_argument("--continuation-only", action="store_true",
                     help="write only the generated continuation, not the primer")
    _add_json_arg(gen)

    demo = sub.add_parser("demo-corpus", help="render the built-in demo corpus to a directory",
                          description="Render a few hundred public-domain tunes shipped by music21 "
                                      "(Essen and O'Neill folk tunes, Bach chorales) to MIDI. "
                                      "Deterministic; an existing complete corpus is reused.")
    demo.add_argument("directory", nargs="?", default=None,
                      help="output directory (default: the user cache, ~/.cache/melodyflow/...)")
    _add_json_arg(demo)
    return parser


def _print_counts(summary: dict) -> None:
    counts = summary["counts"]
    rows = [(k, counts[k]) for k in ("found", "converted", "duplicates", "failed", "sequences",
                                     "tunes_failed", "already_ingested", "ignored")]
    rows += [(f"  failed: {reason}", n) for reason, n in counts["failure_reasons"].items()]
    width = max(len(k) for k, _ in rows)
    print(f"Ingestion of {summary['source']}: {summary['status'].replace('_', ' ')}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value:>8}")
    if summary.get("batch_dir"):
        print(f"  shards        {summary['batch_dir']}")
        print(f"  report        {summary['report']}")
        print(f"  dead letters  {summary['dead_letters']}")


def _print_dataset(summary: dict) -> None:
    info, stats = summary["info"], summary["stats"]
    print(f"Melody dataset {info['config']} at {summary['out_dir']}: {summary['status'].replace('_', ' ')}")
    names = sorted(set(stats["per_split"]["train"]) | set(stats["per_split"]["eval"]))
    width = max([len(n) for n in names] + [7])
    print(f"  {'counter':<{width}}  {'train':>8}  {'eval':>8}")
    for name in names:
        print(f"  {name:<{width}}  {stats['per_split']['train'].get(name, 0):>8}  "
              f"{stats['per_split']['eval'].get(name, 0):>8}")
    print(f"  format {info['format']}, input size {info['input_size']}, {info['num_classes']} classes")


def _print_training(result: dict) -> None:
    budget = " (time budget reached)" if result.get("stop_reason") == "time_budget" else ""
    print(f"Trained to step {result['step']} (from {result['start_step']}) in {result['elapsed_s']:.1f} s{budget}")
    if result.get("parent"):
        print(f"  fine-tuned from {result['parent']['url']} (step {result['parent']['step']})")
    for split in ("train", "eval"):
        metrics = result[f"{split}_metrics"]
        if metrics:
            print(f"  {split:<5} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if result["divergence_events"]:
        print(f"  recovered from {len(result['divergence_events'])} divergence(s)")
    print(f"  bundle      {result['bundle']}")
    print(f"  loss curve  {result['loss_curve']}")


def _print_pipeline(result: dict) -> None:
    _print_counts(result["ingest"])
    _print_dataset(result["dataset"])
    training = result["training"]
    if training["status"] == "up_to_date":
        print(f"Model already trained to step {training['step']}: {training['bundle']}")
    else:
        _print_training(training)
    _print_generation(result["generation"])
    print(f"Listen and look: {result['generation']['index'].rsplit('/', 1)[0]}/<primer>/<nnn>.mid and .png")


def _print_generation(index: dict) -> None:
    c = index["counts"]
    print(f"Generated {c['outputs']} melodies for {c['ok']} of {c['primers']} primer(s) from {index['bundle']}")
    for entry in index["primers"]:
        if entry["status"] != "ok":
            print(f"  {entry['id']}: failed: {entry['error']}")
    print(f"  index  {index['index']}")


def _runner_options(args: argparse.Namespace) -> dict[str, str]:
    """Parse ``--runner-option`` and validate the runner settings before any flow run is created."""
    from melodyflow.transforms.beam.runners import RunnerConfig, parse_runner_options

    options = parse_runner_options(args.runner_option)
    RunnerConfig(runner=args.runner, workers=args.workers or 1, options=options)
    return options


def _emit(args: argparse.Namespace, result: dict, printer) -> None:
    if args.json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        printer(result)


def _train(args: argparse.Namespace) -> dict:
    from melodyflow.flows.train import resolve_hparams, train_melody_model

    config = _config_for(args)
    resolve_hparams(config, args.preset, args.hparams, args.init_from)  # validate before starting a flow
    if args.resume:
        from melodyflow.transforms.io import storage

        if not storage.list_dir(storage.join(args.run_dir, "checkpoints")):
            raise ValueError(f"--resume: {args.run_dir} has no checkpoints to resume from")
    steps = args.num_training_steps or (None if args.time_budget else 20000)
    return train_melody_model(
        data_root=args.data_root, run_dir=args.run_dir, config=config, hparams=args.hparams,
        preset=args.preset or "magenta", num_training_steps=steps, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, seed=args.seed,
        time_budget_s=args.time_budget, init_from=args.init_from)


def _run_pipeline(args: argparse.Namespace) -> dict:
    from melodyflow.flows.pipeline import melody_pipeline

    return melody_pipeline(source=args.source, data_root=args.data_root, workers=args.workers,
                           config=_config_for(args), num_training_steps=args.num_training_steps,
                           primers=args.primers, time_budget_s=args.time_budget, init_from=args.init_from)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_third_party_noise()
    from melodyflow.models.bundles.bundle import BundleError
    from melodyflow.transforms.melodies.dataset import IncompleteDatasetError, NoInputError
    from melodyflow.transforms.beam.runners import RunnerConfigError
    from melodyflow.transforms.io.storage import StorageError, redact

    try:
        if args.command == "demo-corpus":
            from melodyflow.transforms.ingest.demo_corpus import build_demo_corpus, default_cache_dir

            directory = args.directory or default_cache_dir()
            manifest = build_demo_corpus(directory, progress=lambda m: print(m, file=sys.stderr))
            _emit(args, {"directory": os.path.abspath(directory), "files": len(manifest["files"])},
                  lambda r: print(f"{r['files']} files in {r['directory']}"))
            return 0
        if args.command == "ingest":
            from melodyflow.flows.ingest import ingest_corpus

            result = ingest_corpus(
                source=args.source, data_root=args.data_root, workers=args.workers, runner=args.runner,
                runner_options=_runner_options(args), collection=args.collection,
                max_file_mb=args.max_file_mb, max_notes=args.max_notes, file_timeout_s=args.file_timeout,
                memory_limit_mb=args.memory_limit_mb)
            _emit(args, result, _print_counts)
            return 0
        if args.command == "dataset":
            from melodyflow.flows.dataset import build_melody_dataset
            from melodyflow.transforms.melodies.extraction_reference import parse_transpose_range

            parse_transpose_range(args.transpose_range)
            runner_options = _runner_options(args)
            result = build_melody_dataset(
                data_root=args.data_root, config=args.config, eval_ratio=args.eval_ratio,
                transpose_range=args.transpose_range, format=args.format,
                keep_polyphonic_tracks=args.keep_polyphonic_tracks, workers=args.workers,
                runner=args.runner, runner_options=runner_options, force=args.force)
            _emit(args, result, _print_dataset)
            return 0
        if args.command == "train":
            _emit(args, _train(args), _print_training)
            return 0
        if args.command == "generate":
            from melodyflow.flows.generate import generate_melodies
            from melodyflow.models.bundles.bundle import resolve_bundle
            from melodyflow.models.generation.sampling import GenerationOptions

            GenerationOptions(num_outputs=args.num_outputs, num_steps=args.num_steps, temperature=args.temperature,
                              beam_size=args.beam_size, branch_factor=args.branch_factor,
                              steps_per_iteration=args.steps_per_iteration, seed=args.seed)
            resolve_bundle(args.bundle)
            events = None
            if args.primer_melody:
                try:
                    events = json.loads(args.primer_melody)
                except json.JSONDecodeError:
                    raise ValueError("--primer-melody must be a list like [60,-2,62,-2], "
                                     f"got {args.primer_melody!r}") from None
            result = generate_melodies(
                bundle=args.bundle, output=args.output, primers=args.primers, primer_melody=events,
                num_outputs=args.num_outputs, num_steps=args.num_steps, temperature=args.temperature,
                beam_size=args.beam_size, branch_factor=args.branch_factor,
                steps_per_iteration=args.steps_per_iteration, qpm=args.qpm, seed=args.seed,
                continuation_only=args.continuation_only)
            _emit(args, result, _print_generation)
            return 0
        if args.command == "run":
            _emit(args, _run_pipeline(args), _print_pipeline)
            return 0
    except (RunnerConfigError, ValueError, FileNotFoundError, NoInputError, IncompleteDatasetError,
            BundleError) as exc:
        print(f"melodyflow {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"melodyflow {args.command}: storage failure, nothing was published: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
