"""An evaluation's results as one JSON object, a markdown report and charts under ``OUT``.

``OUT/charts/<feature>.png`` and ``OUT/charts/overview.png`` are written first, then
``OUT/report.md``, and ``OUT/evaluation.json`` last: when it exists, the rest is complete.
"""

from __future__ import annotations

import json

import numpy as np

from melodyflow.models.evaluation.charts import feature_chart, overview_chart
from melodyflow.models.evaluation.features import ALL_FEATURES
from melodyflow.models.evaluation.judge import Judged, Judgement
from melodyflow.transforms.io import storage

RESULT = "evaluation.json"
REPORT = "report.md"
CHARTS = "charts"
EXAMPLES = 10


def _rounded(value):
    if isinstance(value, float):
        return round(value, 6) if np.isfinite(value) else None
    return value


def result_document(judged: Judged, judgement: Judgement, reference: dict, heldout: dict | None,
                    settings: dict) -> dict:
    """The ``--json`` object: ``heldout`` (with a bundle), ``generated``, ``reference``, per-melody rows."""
    features = {name: c.to_dict() for name, c in judgement.comparisons.items()}
    copies = sorted(range(len(judged.names)), key=lambda i: (-judgement.judged_spans[i].steps, i))[:EXAMPLES]
    melodies = []
    for i, name in enumerate(judged.names):
        span = judgement.judged_spans[i]
        row = {"name": name, "steps": int(judged.events[i].size - judged.starts[i]), "start_step": judged.starts[i],
               "copied_from": reference["train_ids"][span.reference] if span.reference >= 0 else None}
        for f in ALL_FEATURES:
            value = judgement.judged_table[f.name][i]
            row[f.name] = [_rounded(float(v)) for v in value] if f.vector else _rounded(float(value))
        melodies.append(row)
    document = {
        "generated": {
            "count": len(judged.names), "similarity": judgement.similarity, "features": features,
            "copied": {**judgement.copied(), "examples": [
                {"name": judged.names[i], "steps": judgement.judged_spans[i].steps,
                 "start_step": judgement.judged_spans[i].start_step,
                 "training_melody": reference["train_ids"][judgement.judged_spans[i].reference],
                 "training_step": judgement.judged_spans[i].reference_step}
                for i in copies if judgement.judged_spans[i].steps > 0]},
            "failed": judged.failed,
        },
        "reference": {k: v for k, v in reference.items() if k != "train_ids"},
        "settings": settings,
        "melodies": melodies,
    }
    if heldout is not None:
        document["heldout"] = heldout
    return document


def feature_rows(document: dict) -> list[dict]:
    """One row per feature, for tables (Prefect's, the report's)."""
    rows = []
    units = {f.name: f.unit for f in ALL_FEATURES}
    for name, c in document["generated"]["features"].items():
        scalar = not isinstance(c["mean"], list)
        rows.append({"feature": name, "unit": units[name],
                     "judged_mean": c["mean"] if scalar else "(histogram)",
                     "reference_mean": c["reference_mean"] if scalar else "(histogram)",
                     "overlap": c["overlap"], "kl": c["kl"]})
    return rows


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_report(document: dict, chart_names: list[str]) -> str:
    gen, ref = document["generated"], document["reference"]
    lines = ["# Melody evaluation", "",
             f"Reference: `{ref['dataset']}` ({ref['config']}): {ref['eval_melodies']} eval melodies for the "
             f"features, {ref['train_melodies']} training melodies for the copy check.",
             f"Judged: {gen['count']} melodies ({document['settings']['judged']}).", ""]
    if "heldout" in document:
        h = document["heldout"]
        lines += ["## Held-out metrics (whole eval split)", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in h.items()] + [""]
    copied = gen["copied"]
    lines += ["## Summary", "",
              f"- **similarity** (mean overlap area, 0–1): **{gen['similarity']:.3f}**",
              f"- **copied.fraction** (longest copied span ≥ {copied['threshold_steps']} steps): "
              f"**{copied['fraction']:.3f}** ({copied['count']} melodies; longest {copied['max_steps']} steps; "
              f"eval melodies themselves: {copied['reference_fraction']:.3f})", "",
              "## Features (definitions: docs/evaluation.md)", "",
              "| feature | unit | judged mean | reference mean | overlap | KL |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['feature']} | {r['unit']} | {_fmt(r['judged_mean'])} | {_fmt(r['reference_mean'])} | "
              f"{_fmt(r['overlap'])} | {_fmt(r['kl'])} |" for r in feature_rows(document)]
    if copied["examples"]:
        lines += ["", "## Longest copied spans", "", "| melody | steps | at step | training melody | at step |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {e['name']} | {e['steps']} | {e['start_step']} | {e['training_melody']} | {e['training_step']} |"
                  for e in copied["examples"]]
    if gen["failed"]:
        lines += ["", f"## Not judged ({len(gen['failed'])})", ""]
        lines += [f"- `{f['name']}`: {f['error']}" for f in gen["failed"]]
    lines += ["", "## Charts", ""] + [f"![{n}]({CHARTS}/{n}.png)" for n in chart_names]
    return "\n".join(lines) + "\n"


def write_evaluation(out: str, document: dict, judgement: Judgement, title: str) -> dict[str, str]:
    """Write charts, the report and ``evaluation.json`` (last); returns their URLs.

    An earlier evaluation in ``out`` is unpublished first (its ``evaluation.json`` removed, then its charts,
    report and any temporary file a killed run left), so ``out`` never mixes two runs' files.
    """
    storage.remove_tree(storage.join(out, RESULT))
    for stale in (CHARTS, REPORT):
        storage.remove_tree(storage.join(out, stale))
    storage.remove_temporaries(out)
    urls = {}
    for feature in ALL_FEATURES:
        if feature.name in judgement.comparisons:
            url = storage.join(out, CHARTS, f"{feature.name}.png")
            storage.write_bytes(url, feature_chart(feature, judgement.judged_table[feature.name],
                                                   judgement.reference_table[feature.name],
                                                   judgement.comparisons[feature.name]))
            urls[feature.name] = url
    urls["overview"] = storage.join(out, CHARTS, "overview.png")
    storage.write_bytes(urls["overview"], overview_chart(judgement.judged_table, judgement.reference_table,
                                                         judgement.comparisons, title))
    urls["report"] = storage.join(out, REPORT)
    storage.write_text(urls["report"], markdown_report(document, ["overview", *[f.name for f in ALL_FEATURES
                                                                              if f.name in urls]]))
    urls["result"] = storage.join(out, RESULT)
    document["report"] = urls["report"]
    storage.write_text(urls["result"], json.dumps(document, indent=2, sort_keys=True))
    return urls
