"""Side by side: melodyflow's basic/lookback/attention models against Magenta 2.1.4's own, same data and steps.

    .venv/bin/python bench/magenta_comparison.py [--corpora demo,nottingham] [--configs basic_rnn,lookback_rnn,attention_rnn]
        [--steps 200] [--attention-steps 100] [--hparams 'batch_size=64,rnn_layer_sizes=[64,64],learning_rate=0.005']
        [--primers 5] [--num-outputs 8] [--keep-best 2] [--scratch DIR] [--magenta-venv DIR] [--json ROWS.json]

For each corpus and config, on one melodyflow dataset (``dataset --format sequence-example``, which Magenta's
trainer reads as it is):

1. Magenta trains ``--steps`` steps (``--attention-steps`` for attention_rnn) on the train split
   (``melody_rnn_train``, ``--hparams``), saves a bundle (``--save_generator_bundle``) and generates
   ``--num-outputs`` melodies of 128 steps for each primer (``--primer_midi``); melodyflow trains the same
   steps with the same hparams, and generates as many per primer (``generate --num-outputs``), scored and
   ranked.
2. Held-out loss on the eval split: Magenta's in its own session (every eval record, ``_magenta_heldout_probe``)
   and, for basic/lookback, through ``import-magenta`` + ``evaluate --bundle`` (attention_rnn does not import);
   melodyflow's from ``evaluate --bundle``.
3. ``evaluate --generated``: ``similarity`` and ``copied.fraction`` of each side's outputs (primer included,
   as both write it) against the dataset; for melodyflow also of the outputs ``--keep-best`` would keep (the
   best-ranked without problems; ``generate`` gives a candidate the same melody whatever ``--keep-best`` is).
4. The mean ranking score (``docs/evaluation.md``) of the kept and of the discarded candidates, from
   melodyflow's ``index.json``.

Primers: the first bar of the first ``--primers`` eval melodies that start with a note (one-track MIDI
files, shared by both; see ``write_primers``).  Outputs are judged whole, primer included, as both write them:
a 2-bar copy needs at least a bar from the model.  Everything lands in ``--scratch`` (never the repository);
the Nottingham corpus is ingested from ``../shared/corpora/nottingham`` (``--data-root nottingham=DIR`` reuses
one).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _magenta_reference import (DEFAULT_VENV, NOTTINGHAM, Magenta, imported_heldout, load_average,  # noqa: E402
                                melodyflow, melodyflow_train, prepare_data_root, run_logged, write_primers)

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = ("basic_rnn", "lookback_rnn", "attention_rnn")
HPARAMS = "batch_size=64,rnn_layer_sizes=[64,64],learning_rate=0.005"
NUM_STEPS = 128
IMPORTABLE = ("basic_rnn", "lookback_rnn")


def corpus_dir(name: str) -> str:
    if name == "nottingham":
        return NOTTINGHAM
    if name == "demo":
        from _harness import default_corpus

        return default_corpus()
    return name


def judged(result: dict) -> dict:
    gen = result["generated"]
    return {"count": gen["count"], "similarity": gen["similarity"], "copied": gen["copied"]["fraction"]}


def kept_and_discarded(index: dict, keep: int, out: str) -> tuple[list[float], list[float], str]:
    """Scores of the candidates ``--keep-best keep`` keeps and discards; the kept files copied to ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    kept, discarded = [], []
    for entry in index["primers"]:
        chosen = [o for o in sorted(entry["outputs"], key=lambda o: o["rank"]) if not o["problems"]][:keep]
        for o in entry["outputs"]:
            (kept if o in chosen else discarded).append(o["score"])
        for o in chosen:
            src = os.path.join(index["output"], o["midi"])
            shutil.copy(src, os.path.join(out, f"{entry['id']}-{os.path.basename(src)}"))
    return kept, discarded, out


def magenta_score(work: str, config: str, root: str, primers: list[str], log: str) -> float | None:
    """Mean score of Magenta's outputs by ``generate``'s formula, the likelihood under Magenta's own (imported)
    model (``_score_outputs.py``); None for attention_rnn, which does not import."""
    imported = os.path.join(work, "magenta-imported")
    if config not in IMPORTABLE or not os.path.isdir(imported):
        return None
    groups = []
    for primer in primers:
        outs = sorted(glob.glob(os.path.join(work, "magenta-gen", os.path.splitext(os.path.basename(primer))[0],
                                             "*.mid")))
        groups.append(f"{primer}:{','.join(outs)}")
    stdout, _, _ = run_logged([sys.executable, os.path.join(HERE, "_score_outputs.py"), imported, root, config,
                               *groups], log)
    return statistics.mean(json.loads(stdout.strip().splitlines()[-1])["scores"])


def magenta_side(magenta: Magenta, root: str, config: str, work: str, args: argparse.Namespace,
                 primers: list[str]) -> dict:
    timing = magenta.train(root, config, os.path.join(work, "magenta-run"), args.hparams, args.steps)
    mag = magenta.bundle(config, os.path.join(work, "magenta-run"), args.hparams, os.path.join(work, f"{config}.mag"))
    session = magenta.heldout(mag, root, config, os.path.join(work, "magenta-heldout.json"))
    started = time.monotonic()
    outputs = magenta.generate(mag, primers, os.path.join(work, "magenta-gen"), args.num_outputs, NUM_STEPS)
    generate_s = time.monotonic() - started
    gen_glob = os.path.join(work, "magenta-gen", "*", "*.mid")
    log = magenta.log
    if config in IMPORTABLE:
        result = imported_heldout(mag, os.path.join(work, "magenta-imported"), root, config, log, gen_glob)
        via_import = result["heldout"]["loss"]
    else:
        result, _, _ = melodyflow("evaluate", root, "--config", config, "--generated", gen_glob,
                                  "--output", os.path.join(work, "magenta-gen-evaluation"), log=log)
        via_import = None
    return {"score_all": magenta_score(work, config, root, primers, log),
            "train_wall_s": timing.wall_s, "train_s": timing.train_s, "loss": session["loss"],
            "loss_via_import": via_import, "eval_melodies": session["melodies"], "outputs": len(outputs),
            "generate_s": generate_s, **judged(result)}


def melodyflow_side(root: str, config: str, work: str, args: argparse.Namespace, primer_dir: str) -> dict:
    log = os.path.join(work, "melodyflow.log")
    run_dir = os.path.join(work, "melodyflow-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    result, timing = melodyflow_train(root, config, run_dir, args.hparams, log, args.steps,
                                      ("--eval-every", str(args.steps)))
    out = os.path.join(work, "melodyflow-gen")
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    index, _, _ = melodyflow("generate", run_dir, "--output", out, "--primers", primer_dir, "--num-outputs",
                             str(args.num_outputs), "--num-steps", str(NUM_STEPS), "--no-audio", log=log)
    generate_s = time.monotonic() - started
    index["output"] = out
    every, _, _ = melodyflow("evaluate", root, "--config", config, "--bundle", run_dir, "--generated",
                             os.path.join(out, "*", "[0-9][0-9][0-9].mid"), "--output", out + "-evaluation", log=log)
    kept, discarded, kept_dir = kept_and_discarded(index, args.keep_best, os.path.join(work, "melodyflow-kept"))
    best, _, _ = melodyflow("evaluate", root, "--config", config, "--generated", kept_dir,
                            "--output", kept_dir + "-evaluation", log=log)
    return {"train_wall_s": timing.wall_s, "train_s": timing.train_s, "loss": every["heldout"]["loss"],
            "loss_in_training": result["eval_metrics"].get("loss"), "eval_melodies": every["heldout"]["melodies"],
            "outputs": sum(len(e["outputs"]) for e in index["primers"]), "generate_s": generate_s,
            **judged(every), "kept": judged(best), "score_kept": statistics.mean(kept),
            "score_all": statistics.mean(kept + discarded),
            "score_discarded": statistics.mean(discarded) if discarded else None}


def compare(corpus: str, config: str, root: str, magenta: Magenta, args: argparse.Namespace,
            primers: list[str]) -> dict:
    work = os.path.join(args.scratch, corpus, config)
    if config == "attention_rnn":
        args = argparse.Namespace(**{**vars(args), "steps": args.attention_steps})
    os.makedirs(work, exist_ok=True)
    load = load_average()
    started = time.monotonic()
    row = {"corpus": corpus, "config": config, "steps": args.steps, "hparams": args.hparams,
           "magenta": magenta_side(magenta, root, config, work, args, primers),
           "melodyflow": melodyflow_side(root, config, work, args, os.path.dirname(primers[0]))}
    row["load"] = round((load + load_average()) / 2, 1)
    row["wall_s"] = round(time.monotonic() - started, 1)
    print_rows([row])
    return row


def _f(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def print_rows(rows: list[dict]) -> None:
    print("| corpus | config | model | held-out loss | (via import) | similarity | copied.fraction | "
          "kept: similarity | kept: copied | mean score: all | kept / discarded | train wall s | steps/s | load |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for side in ("magenta", "melodyflow"):
            s = r[side]
            kept = s.get("kept") or {}
            scores = (f"{s['score_kept']:.3f} / {_f(s['score_discarded'])}" if "score_kept" in s else "—")
            rate = r["steps"] / s["train_s"] if s.get("train_s") else None
            name = "Magenta 2.1.4" if side == "magenta" else "melodyflow"
            print(f"| {r['corpus']} | {r['config']} | {name} | {s['loss']:.4f} | {_f(s.get('loss_via_import'), 4)} | "
                  f"{s['similarity']:.3f} | {s['copied']:.3f} | {_f(kept.get('similarity'))} | "
                  f"{_f(kept.get('copied'))} | {_f(s.get('score_all'))} | {scores} |"
                  f" {s['train_wall_s']:.0f} | {_f(rate, 2)} | {r['load']} |")


def rescore(path: str, args: argparse.Namespace) -> None:
    """Adds the mean scores of all outputs to rows a run without them wrote (from its files in --scratch)."""
    with open(path) as fh:
        rows = json.load(fh)
    roots = dict(d.split("=", 1) for d in args.data_root)
    for r in rows:
        work = os.path.join(args.scratch, r["corpus"], r["config"])
        root = roots.get(r["corpus"]) or os.path.join(args.scratch, r["corpus"], "data")
        primers = sorted(glob.glob(os.path.join(args.scratch, r["corpus"], "primers", "*.mid")))
        r["magenta"]["score_all"] = magenta_score(work, r["config"], root, primers, os.path.join(work, "rescore.log"))
        with open(os.path.join(work, "melodyflow-gen", "index.json")) as fh:
            index = json.load(fh)
        scores = [o["score"] for e in index["primers"] for o in e["outputs"]]
        r["melodyflow"]["score_all"] = statistics.mean(scores)
    with open(path, "w") as fh:
        json.dump(rows, fh, indent=1)
    print_rows(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default="demo,nottingham", help="demo, nottingham or corpus directories")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--attention-steps", type=int, default=100,
                        help="steps for attention_rnn (Magenta's AttentionCellWrapper trains about 6x slower)")
    parser.add_argument("--hparams", default=HPARAMS, help="Magenta's syntax; the same on both sides")
    parser.add_argument("--primers", type=int, default=5)
    parser.add_argument("--num-outputs", type=int, default=8)
    parser.add_argument("--keep-best", type=int, default=2)
    parser.add_argument("--scratch", default="/tmp/melodyflow-magenta-comparison")
    parser.add_argument("--magenta-venv", default=DEFAULT_VENV)
    parser.add_argument("--data-root", action="append", default=[], metavar="CORPUS=DIR",
                        help="DATA_ROOT for a corpus (default: SCRATCH/<corpus>/data); ingested and built if needed")
    parser.add_argument("--json", default=None, help="also write every row here")
    parser.add_argument("--rescore", default=None, metavar="ROWS.json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rescore:
        rescore(args.rescore, args)
        return 0
    magenta = Magenta(os.path.abspath(args.magenta_venv), os.path.join(args.scratch, "magenta.log"))
    os.makedirs(args.scratch, exist_ok=True)
    rows, started = [], time.monotonic()
    configs = args.configs.split(",")
    for corpus in args.corpora.split(","):
        name = os.path.basename(corpus.rstrip("/"))
        root = dict(d.split("=", 1) for d in args.data_root).get(corpus) or os.path.join(args.scratch, name, "data")
        prepare_data_root(corpus_dir(corpus), root, configs + ["basic_rnn"], os.path.join(args.scratch, "prepare.log"))
        primers = write_primers(root, os.path.join(args.scratch, name, "primers"), args.primers)
        for config in configs:
            rows.append(compare(name, config, root, magenta, args, primers))
            if args.json:
                with open(args.json, "w") as fh:
                    json.dump(rows, fh, indent=1)
    print(f"\nAll rows ({time.monotonic() - started:.0f} s; {os.cpu_count()} cores; hparams {args.hparams}, "
          f"{args.steps} steps on both sides ({args.attention_steps} for attention_rnn); {args.primers} primers x "
          f"{args.num_outputs} outputs of {NUM_STEPS} "
          f"steps; kept = the best {args.keep_best} per primer without problems):\n")
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
