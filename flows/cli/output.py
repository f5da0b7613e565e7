"""How each command's result reads in a terminal (``--json`` prints the result itself)."""

from __future__ import annotations

import os

COUNT_KEYS = ("found", "converted", "duplicates", "failed", "sequences", "tunes_failed", "already_ingested",
              "ignored")


def show_ingest(summary: dict) -> None:
    counts = summary["counts"]
    rows = [(k, counts[k]) for k in COUNT_KEYS]
    rows += [(f"  failed: {reason}", n) for reason, n in counts["failure_reasons"].items()]
    width = max(len(k) for k, _ in rows)
    print(f"Ingestion of {summary['source']}: {summary['status'].replace('_', ' ')}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value:>8}")
    if summary.get("batch_dir"):
        print(f"  shards        {summary['batch_dir']}")
        print(f"  report        {summary['report']}")
        print(f"  dead letters  {summary['dead_letters']}")


def show_dataset(summary: dict) -> None:
    info, stats = summary["info"], summary["stats"]
    print(f"Melody dataset {info['config']} at {summary['out_dir']}: {summary['status'].replace('_', ' ')}")
    names = sorted(set(stats["per_split"]["train"]) | set(stats["per_split"]["eval"]))
    width = max([len(n) for n in names] + [7])
    print(f"  {'counter':<{width}}  {'train':>8}  {'eval':>8}")
    for name in names:
        print(f"  {name:<{width}}  {stats['per_split']['train'].get(name, 0):>8}  "
              f"{stats['per_split']['eval'].get(name, 0):>8}")
    print(f"  format {info['format']}, input size {info['input_size']}, {info['num_classes']} classes")
    for warning in summary.get("warnings", ()):
        print(f"  warning: {warning}")


def show_training(result: dict) -> None:
    print(f"Trained to step {result['step']} (from {result['start_step']}) in {result['elapsed_s']:.1f} s")
    if result.get("stop_reason") == "eval_loss_reached":
        print("  stopped: the eval loss reached --stop-at-eval-loss")
    for split in ("train", "eval"):
        metrics = result[f"{split}_metrics"]
        if metrics:
            print(f"  {split:<5} " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if result["divergence_events"]:
        print(f"  recovered from {len(result['divergence_events'])} divergence(s)")
    if not result.get("writes_run", True):
        print(f"  as {result['role']}: the chief writes the run directory, its bundle and loss curve")
        return
    print(f"  bundle      {result['bundle']}")
    print(f"  loss curve  {result['loss_curve']}")


def show_generation(index: dict) -> None:
    c = index["counts"]
    if index.get("status") == "up_to_date":
        print(f"Melodies from {index['bundle']} already generated: {c['outputs']} for {c['ok']} of "
              f"{c['primers']} primer(s)")
    else:
        print(f"Generated {c['outputs']} melodies for {c['ok']} of {c['primers']} primer(s) from {index['bundle']}")
    for entry in index["primers"]:
        if entry["status"] != "ok":
            print(f"  {entry['id']}: failed: {entry['error']}")
    audio = index.get("audio")
    print(f"  audio    {audio['description'] if audio else 'off'}")
    print(f"  index    {index['index']}")
    if index.get("gallery"):
        print(f"  gallery  {location(index['gallery'])}")


def location(url: str) -> str:
    """A URL as given; a local path made absolute, so it can be pasted into a browser or a shell."""
    return url if "://" in url else os.path.abspath(url)


def generation_failure(index: dict) -> str | None:
    c = index["counts"]
    if c["primers"] and not c["ok"]:
        return f"no primer succeeded ({c['failed']} failed; the reasons are listed above)"
    return None


def show_pipeline(result: dict) -> None:
    show_ingest(result["ingest"])
    show_dataset(result["dataset"])
    training = result["training"]
    if training["status"] == "up_to_date":
        print(f"Model already trained to step {training['step']}: {training['bundle']}")
    else:
        show_training(training)
    show_generation(result["generation"])
    evaluation = result.get("evaluation") or {}
    if "generated" in evaluation:
        from melodyflow.flows.cli.evaluate import show as show_evaluation

        show_evaluation(evaluation)
    elif evaluation:
        print(f"Evaluation skipped: {evaluation['reason']}")
    print(f"Listen and look: {location(result['gallery'])}")


def pipeline_failure(result: dict) -> str | None:
    return generation_failure(result["generation"])


def show_demo_corpus(result: dict) -> None:
    print(f"{result['files']} files in {result['directory']}")
