"""`melodyflow evaluate` and ranked generation, end to end on a generated corpus and a debug bundle."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import midi_factory
from support import write_corpus
from melodyflow.flows.cli import main
from melodyflow.flows.evaluate import evaluate_melodies
from melodyflow.models.evaluation.corpus import dataset_url, load_corpus
from melodyflow.models.evaluation.features import ALL_FEATURES



def _midi(events) -> bytes:
    import note_seq
    from note_seq.melodies_lib import Melody

    buf = io.BytesIO()
    note_seq.note_sequence_to_pretty_midi(Melody([int(e) for e in events]).to_sequence(qpm=120)).write(buf)
    return buf.getvalue()


def _random_walk(seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    events, pitch = [], 60
    while len(events) < 192:
        pitch = int(np.clip(pitch + rng.choice([-3, -2, -1, 1, 2, 3]), 40, 90))
        events += [pitch] + [-2] * int(rng.choice([0, 1, 3]))
    return events[:192]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from test_training import train_debug_model

    data, run, result = train_debug_model(tmp_path_factory.mktemp("evaluate"), files=40, steps=10)
    return {"data": data, "run": run, "bundle": result.bundle, "eval_metrics": result.eval_metrics}


def _artifacts(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found}


@pytest.mark.slow
def test_cli_evaluates_a_bundle_into_one_json_object_and_a_report(prefect_harness, trained, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", trained["data"], "--bundle", trained["run"], "--num-samples", "6", "--seed", "3",
                 "--output", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    heldout = result["heldout"]
    # The same numbers training's own eval reported for this bundle on this split.
    for key in ("loss", "perplexity", "accuracy", "event_accuracy", "no_event_accuracy"):
        assert heldout[key] == pytest.approx(trained["eval_metrics"][key], rel=1e-5)
    gen = result["generated"]
    assert gen["count"] == 6 and 0.0 <= gen["similarity"] <= 1.0
    assert set(gen["features"]) == {f.name for f in ALL_FEATURES}
    for values in gen["features"].values():
        assert {"mean", "reference_mean", "overlap", "kl"} <= set(values)
    assert set(gen["copied"]) >= {"fraction", "max_steps"}
    assert result["report"] == str(out / "report.md") and (out / "report.md").read_text().startswith("# Melody")
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["generated"]["similarity"] == gen["similarity"]
    assert {p.name for p in (out / "charts").iterdir()} == {f"{f.name}.png" for f in ALL_FEATURES} | {"overview.png"}
    assert all(m["start_step"] == 16 for m in saved["melodies"])  # the primer bar is not judged


@pytest.mark.slow
def test_judging_separates_real_random_and_copied_melodies(prefect_harness, trained, tmp_path):
    corpus = load_corpus(dataset_url(trained["data"], "basic_rnn"))
    sets = {
        "unseen": {f"u{i}.mid": midi_factory.melodic_midi(1000 + i) for i in range(30)},
        "random": {f"r{i}.mid": _midi(_random_walk(i)) for i in range(30)},
        "copies": {f"c{i}.mid": _midi(corpus.train.events[i]) for i in range(20)},
    }
    sets["unseen"]["broken.mid"] = b"MThd\x00\x00\x00\x06garbage"
    results = {}
    for name, files in sets.items():
        state = evaluate_melodies(data_root=trained["data"], generated=str(write_corpus(tmp_path / name, files)),
                                  output=str(tmp_path / f"out-{name}"), return_state=True)
        results[name] = state.result()
        if name == "unseen":
            artifacts = _artifacts(state.state_details.flow_run_id)
    unseen, random, copies = (results[k]["generated"] for k in ("unseen", "random", "copies"))
    assert unseen["similarity"] > random["similarity"] + 0.15, (unseen["similarity"], random["similarity"])
    assert copies["copied"]["fraction"] >= 0.9 and unseen["copied"]["fraction"] <= 0.1
    assert random["copied"]["fraction"] == 0.0
    assert unseen["count"] == 30 and [f["name"] for f in unseen["failed"]] == ["broken.mid"]
    assert "heldout" not in results["unseen"]
    rows = json.loads(artifacts["evaluation-features-basic-rnn"].data)
    assert {r["feature"] for r in rows} == {f.name for f in ALL_FEATURES}
    assert "similarity" in artifacts["evaluation-summary-basic-rnn"].data
    assert "data:image/png;base64," in artifacts["evaluation-charts-basic-rnn"].data  # pictures the UI can show


@pytest.mark.slow
def test_cli_refuses_bad_invocations(trained, tmp_path, capsys):
    assert main(["evaluate", trained["data"]]) == 2
    assert "--bundle" in capsys.readouterr().err
    assert main(["evaluate", trained["data"], "--generated", str(tmp_path), "--num-samples", "3"]) == 2
    assert "--num-samples" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nowhere"), "--generated", str(tmp_path)]) == 2
    assert "COMPLETED" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # argparse's own check: one line, status 2
        main(["evaluate", trained["data"], "--bundle", trained["run"], "--num-samples", "0"])
    assert refused.value.code == 2
    assert main(["generate", trained["run"], "--output", str(tmp_path / "g"), "--num-outputs", "2",
                 "--keep-best", "3"]) == 2
    assert "--keep-best" in capsys.readouterr().err


@pytest.mark.slow
def test_keep_best_leaves_the_best_k_ranked_and_is_deterministic(prefect_harness, trained, tmp_path):
    from melodyflow.flows.generate import generate_melodies

    primers = write_corpus(tmp_path / "primers", {"a.mid": _midi([60, -2, 62, -2, 64, -2, 65, -2] * 2),
                                                  "b.mid": _midi([67, -2, -2, -2, 65, -2, 64, -2] * 2)})
    kwargs = dict(bundle=trained["run"], primers=str(primers), num_outputs=6, keep_best=2, num_steps=48, seed=5)
    index = generate_melodies(output=str(tmp_path / "one"), **kwargs)
    assert index["options"]["keep_best"] == 2 and index["scoring"]["reference"].endswith("basic_rnn")
    for entry in index["primers"]:
        assert entry["status"] == "ok" and entry["candidates"] == 6
        kept, discarded = entry["outputs"], entry["discarded"]
        assert [o["rank"] for o in kept] == [1, 2] and kept[0]["score"] >= kept[1]["score"]
        assert len(discarded) == 4 and all(d["score"] <= kept[-1]["score"] or d["problems"] for d in discarded)
        assert set(kept[0]["score_components"]) == {"log_likelihood", "closeness", "copy", "repetition"}
        files = sorted(p.name for p in (tmp_path / "one" / entry["id"]).iterdir())
        assert files == sorted(f"{o['candidate']:03d}.{ext}" for o in kept for ext in ("mid", "png", "wav"))
    generate_melodies(output=str(tmp_path / "two"), **kwargs)
    for name in ("index.json", *[o["midi"] for e in index["primers"] for o in e["outputs"]]):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


@pytest.mark.slow
def test_a_primer_whose_candidates_all_fail_says_why(trained, tmp_path):
    from melodyflow.models.evaluation.ranking import CandidateScore
    from melodyflow.models.generation.outputs import generate_for_primer
    from melodyflow.models.generation.primers import primer_from_events
    from melodyflow.models.generation.sampling import GenerationOptions, load_generator

    def everything_copied(results):
        return [CandidateScore(-1.0, {}, ["copied: 40 steps of training melody x"]) for _ in results]

    entry = generate_for_primer(load_generator(trained["run"]), "p", primer_from_events([60, -2, 62]), str(tmp_path),
                                GenerationOptions(num_outputs=3, num_steps=24), source="test",
                                scorer=everything_copied, keep_best=1)
    assert entry["status"] == "error" and "all 3 candidates were rejected (copied)" in entry["error"]
    assert len(entry["discarded"]) == 3 and not entry["outputs"]
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
