"""``OUT/index.html``: one page to look at and listen to a generation run.

The page is self-contained: inline CSS, no script, nothing fetched from another site, and every link relative to
``OUT``. So it works opened from disk, served by any web server, and served from a bucket. It is built from
``OUT/index.json`` (and ``OUT/evaluation.json`` when there is one); outputs appear in ``rank`` order (1 = best)
when the index has ranks, in file order otherwise.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote

from melodyflow.transforms.io import storage

GALLERY = "index.html"
INDEX = "index.json"
EVALUATION = "evaluation.json"
MODEL_KEYS = ("config", "version", "step")  # from the bundle's bundle.json, then its hparams and eval metrics
MAX_SUMMARY_ROWS = 40

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1rem 1.5rem;
color:#1d1d1f;background:#fafafa}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccc;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.9rem;margin:.4rem 0}td,th{padding:.15rem .6rem;text-align:left;
border-bottom:1px solid #e3e3e3;vertical-align:top}th{font-weight:600}
.summary{display:flex;flex-wrap:wrap;gap:0 2.5rem}.summary section{min-width:16rem}
.item{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem .8rem;margin:.8rem 0}
.item header{display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:baseline}
.rank{font-weight:700;font-size:1.1rem}.muted{color:#666;font-size:.85rem}
.item img{width:100%;max-width:800px;height:auto;display:block;margin:.4rem 0}
audio{width:100%;max-width:800px}.error{color:#a00}code{font-size:.85rem;word-break:break-all}
nav a{margin-right:.8rem}.outputs{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:0 .8rem}
.components{overflow-x:auto}.components td,.components th{text-align:right}
"""


def ranked_outputs(entry: dict) -> list[dict]:
    """A primer's outputs best first when every one has a ``rank``, in file order otherwise."""
    outputs = list(entry.get("outputs", []))
    if outputs and all(isinstance(o.get("rank"), int) for o in outputs):
        return sorted(outputs, key=lambda o: o["rank"])
    return outputs


def _href(relative: str) -> str:
    return escape(quote(relative, safe="/"), quote=True)


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{escape(str(k))}</th><td>{_number(v)}</td></tr>" for k, v in pairs)


def _flatten(data: dict, prefix: str = "", depth: int = 2):
    """``(dotted key, scalar)`` pairs of a nested dict, lists summarised by their length."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth > 0:
            yield from _flatten(value, f"{name}.", depth - 1)
        elif isinstance(value, (list, tuple)):
            yield name, f"{len(value)} item(s)"
        elif isinstance(value, (int, float, str, bool)) or value is None:
            yield name, value


def _media(files: dict, label: str) -> str:
    parts = [f'<img src="{_href(files["png"])}" alt="piano roll of {escape(label)}">'] if files.get("png") else []
    if files.get("wav"):
        parts.append(f'<audio controls preload="metadata" src="{_href(files["wav"])}"></audio>')
    links = [f'<a href="{_href(files["midi"])}" download>MIDI</a>'] if files.get("midi") else []
    if files.get("wav"):
        links.append(f'<a href="{_href(files["wav"])}" download>WAV</a>')
    if files.get("audio_error"):
        links.append(f'<span class="error">no audio: {escape(files["audio_error"])}</span>')
    return "".join(parts) + f'<div>{" · ".join(links)}</div>'


def _output(output: dict, position: int) -> str:
    name = output["midi"].rsplit("/", 1)[-1]
    rank = output.get("rank", position)
    facts = []
    if output.get("score") is not None:
        facts.append(f"score {_number(output['score'])}")
    if output.get("log_likelihood") is not None:
        facts.append(f"log-likelihood {output['log_likelihood']:.1f}")
    if output.get("notes") is not None:
        facts.append(f"{output['notes']} notes")
    components = sorted((output.get("score_components") or {}).items())
    table = ""
    if components:
        names = "".join(f"<th>{escape(str(k))}</th>" for k, _ in components)
        values = "".join(f"<td>{_number(v)}</td>" for _, v in components)
        table = f'<div class="components"><table><tr>{names}</tr><tr>{values}</tr></table></div>'
    return (f'<article class="item"><header><span class="rank">#{rank}</span><code>{escape(name)}</code>'
            f'<span class="muted">{" · ".join(facts)}</span></header>{_media(output, name)}{table}</article>')


def _primer(entry: dict) -> str:
    pid = entry["id"]
    source = escape(str(entry.get("source", "")))
    head = f'<h2 id="{escape(pid, quote=True)}">{escape(pid)}</h2><p class="muted">from <code>{source}</code></p>'
    if entry.get("status") != "ok":
        error = escape(str(entry.get("error", "unknown error")))
        return f'<section>{head}<p class="error">failed: {error}</p></section>'
    primer = ""
    if entry.get("primer_files"):
        primer = (f'<article class="item"><header><span class="rank">primer</span></header>'
                  f'{_media(entry["primer_files"], pid + " primer")}</article>')
    outputs = "".join(_output(o, n) for n, o in enumerate(ranked_outputs(entry), start=1))
    return f'<section>{head}{primer}<div class="outputs">{outputs}</div></section>'


def _header(index: dict, model: dict | None, evaluation: dict | None) -> str:
    audio = index.get("audio") or {}
    settings = {**index.get("options", {}), "audio": audio.get("description", "off"),
                "primers": index.get("primers_spec") or "-"}
    blocks = [f"<section><h3>Settings</h3><table>{_rows(sorted(settings.items()))}</table></section>"]
    model_rows = [("bundle", index.get("bundle") or "-")]
    if model:
        model_rows += [(k, model[k]) for k in MODEL_KEYS if k in model]
        model_rows += [(k, v) for k, v in sorted((model.get("hparams") or {}).items())]
        model_rows += [(f"eval {k}", v) for k, v in sorted((model.get("eval_metrics") or {}).items())]
    blocks.insert(0, f"<section><h3>Model</h3><table>{_rows(model_rows)}</table></section>")
    if evaluation:
        rows = list(_flatten(evaluation.get("summary", evaluation)))[:MAX_SUMMARY_ROWS]
        blocks.append(f"<section><h3>Evaluation</h3><table>{_rows(rows)}</table></section>")
    counts = index.get("counts", {})
    nav = " ".join(f'<a href="#{_href(e["id"])}">{escape(e["id"])}</a>' for e in index.get("primers", []))
    return (f'<h1>Generated melodies</h1><p class="muted">{counts.get("outputs", 0)} melodies for '
            f'{counts.get("ok", 0)} of {counts.get("primers", 0)} primer(s)</p><div class="summary">'
            f'{"".join(blocks)}</div><nav>{nav}</nav>')


def render_gallery(index: dict, *, model: dict | None = None, evaluation: dict | None = None) -> str:
    """The page for a generation index (``OUT/index.json``), the bundle's metadata and an evaluation summary."""
    body = _header(index, model, evaluation) + "".join(_primer(e) for e in index.get("primers", []))
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>Generated melodies</title><style>{CSS}</style></head><body>{body}</body></html>\n')


def _read_json(url: str) -> dict | None:
    return json.loads(storage.read_text(url)) if storage.exists(url) else None


def write_gallery(out_root: str, index: dict | None = None, evaluation: dict | None = None) -> str:
    """Write ``OUT/index.html`` (atomically) from ``index`` or ``OUT/index.json``; returns its URL.

    ``evaluation`` defaults to ``OUT/evaluation.json`` when it exists; the model comes from the bundle's metadata.
    """
    from melodyflow.models.bundles.bundle import METADATA

    index = index if index is not None else _read_json(storage.join(out_root, INDEX))
    if index is None:
        raise FileNotFoundError(f"no generation index at {storage.join(out_root, INDEX)}")
    if evaluation is None:
        evaluation = _read_json(storage.join(out_root, EVALUATION))
    model = _read_json(storage.join(index["bundle"], METADATA)) if index.get("bundle") else None
    url = storage.join(out_root, GALLERY)
    storage.write_text(url, render_gallery(index, model=model, evaluation=evaluation))
    return url
