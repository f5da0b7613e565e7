"""Proof of equality: Magenta 2.1.4's own bundles, imported, give Magenta's probabilities and greedy notes.

    .venv/bin/python bench/magenta_equality.py [--magenta-venv DIR] [--scratch DIR] [--configs basic_rnn,lookback_rnn]
        [--sizes small,default] [--steps 50] [--primers scale,figure,d_high] [--files 40] [--json ROWS.json]

For each config and model size, with Magenta itself (``../shared/tools/magenta-reference``; set it up with
its ``setup.sh``): convert a few dozen Nottingham tunes, build the config's dataset (``--eval_ratio=0.0``),
train ``--steps`` steps, save a bundle with ``melody_rnn_generate --save_generator_bundle``, and generate
greedily (``--temperature=0.001``) from each primer.  With melodyflow: ``melodyflow import-magenta`` the
``.mag``, ``melodyflow generate`` from the same primer greedily (``--temperature 0``: exactly the most likely
event; at 0.001 Magenta still draws, and where two events are nearly tied it can take the second — the
table then says where and how likely that was), and compare

- ``max |dp|``: every next-step probability over primer + Magenta's continuation (all 128 steps), Magenta's
  session (``_magenta_probe.py``, run in Magenta's venv) against the imported Keras model; ``tune |dp|``: the
  same over the first 256 steps of a training tune (a real melody, since small models often continue with
  silence); ``M err`` and ``mf err``: each side's largest difference from Magenta's equations evaluated exactly
  (float64, from the bundle's raw tensors) — the baseline that shows what float32 rounding alone costs;
- the notes (pitch, start, end) of the two MIDI files, primer included.

Magenta's ``melody_rnn_generate`` starts generating one step after the primer's last note ends, so the
primer it conditions on is the given one cut at that note's end plus a note-off step
(:func:`magenta_effective_primer`); melodyflow's ``generate`` continues right after the events it is given,
so it gets that effective primer.  Everything lands in ``--scratch`` (reused on a re-run: trained runs and
bundles are kept), never in the repository.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import _harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE = h.MAGENTA_REFERENCE
CORPUS = h.NOTTINGHAM
# The small model learns at 0.01 so that a few dozen steps already give it a melody of its own to compare.
SIZES = {"small": "batch_size=8,rnn_layer_sizes=[16,16],learning_rate=0.01",
         "default": "batch_size=128,rnn_layer_sizes=[128,128]"}
PRIMERS = {
    "scale": [60, -2, 62, -2, 64, -2, 65, -2],
    "figure": [67, -2, 64, 60, 62, -2, 64, -2, 65, -2, 62, -2, 67, -2, -2, -2,
               67, -2, 64, 60, 62, -2, 64, -2, 65, -2, 62, -2, 60, -2, -2, -2],
    # D major above basic_rnn's range: both squash it into C in range and transpose the output back.
    "d_high": [86, -2, 88, -2, 90, -2, 91, -2, 93, -2, -2, -2, 90, -2, 86, -1],
}
QPM = 120.0
NUM_STEPS = 128


def magenta_effective_primer(events: list[int]) -> list[int]:
    """The events ``melody_rnn_generate`` conditions on: the primer cut where its last note ends, then that
    note's note-off (``Melody.set_length`` ends a sustained note when it extends the melody by the one step
    between the primer's end and the requested start)."""
    last_onset = max(i for i, e in enumerate(events) if e >= 0)
    end = next((i for i in range(last_onset + 1, len(events)) if events[i] != -2), len(events))
    return list(events[:end]) + [-1]


def _run(cmd: list[str], log: str, env: dict | None = None) -> str:
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return proc.stdout


class Magenta:
    """Magenta's commands through the reference tool, each in its own process."""

    def __init__(self, venv: str, scratch: str):
        self.python = os.path.join(venv, "bin", "python")
        self.run_tool = os.path.join(REFERENCE, "run")
        self.scratch = scratch
        self.log = os.path.join(scratch, "magenta.log")

    def __call__(self, module: str, *flags: str, env: dict | None = None) -> str:
        return _run([self.python, self.run_tool, module, *flags], self.log, env)

    def dataset(self, config: str, corpus: str, files: int) -> str:
        out = os.path.join(self.scratch, f"seqex_{config}")
        records = os.path.join(out, "training_melodies.tfrecord")
        if not os.path.exists(records):
            ns = os.path.join(self.scratch, "notesequences.tfrecord")
            if not os.path.exists(ns):
                subset = os.path.join(self.scratch, "corpus")
                os.makedirs(subset, exist_ok=True)
                for name in sorted(f for f in os.listdir(corpus) if f.endswith(".mid"))[:files]:
                    shutil.copy(os.path.join(corpus, name), subset)
                self("magenta.scripts.convert_dir_to_note_sequences", f"--input_dir={subset}",
                     f"--output_file={ns}", "--recursive")
            self("magenta.models.melody_rnn.melody_rnn_create_dataset", f"--config={config}", f"--input={ns}",
                 f"--output_dir={out}", "--eval_ratio=0.0")
        return records

    def bundle(self, config: str, size: str, records: str, steps: int) -> str:
        run_dir = os.path.join(self.scratch, f"run_{config}_{size}_{steps}")
        mag = os.path.join(self.scratch, f"{config}_{size}_{steps}.mag")
        if not os.path.exists(mag):
            self("magenta.models.melody_rnn.melody_rnn_train", f"--config={config}", f"--run_dir={run_dir}",
                 f"--sequence_example_file={records}", f"--num_training_steps={steps}", f"--hparams={SIZES[size]}")
            self("magenta.models.melody_rnn.melody_rnn_generate", f"--config={config}", f"--run_dir={run_dir}",
                 f"--hparams={SIZES[size]}", f"--bundle_file={mag}", "--save_generator_bundle",
                 "--bundle_description=melodyflow bench/magenta_equality.py")
        return mag

    def greedy(self, mag: str, primer: list[int], out: str) -> str:
        shutil.rmtree(out, ignore_errors=True)
        self("magenta.models.melody_rnn.melody_rnn_generate", f"--bundle_file={mag}", f"--output_dir={out}",
             "--num_outputs=1", f"--num_steps={NUM_STEPS}", f"--primer_melody={json.dumps(primer)}",
             "--temperature=0.001", f"--qpm={QPM}")
        (midi,) = glob.glob(os.path.join(out, "*.mid"))
        return midi

    def softmax(self, mag: str, melodies: list[list[int]], out: str) -> list:
        """Magenta's ``[steps, classes]`` probabilities for each melody, from its own session."""
        import numpy as np

        with open(out + ".in", "w") as fh:
            json.dump(melodies, fh)
        self("_magenta_probe", mag, out + ".in", out, env={**os.environ, "PYTHONPATH": HERE})
        with open(out) as fh:
            return [np.asarray(p) for p in json.load(fh)]

    def tune(self, steps: int = 256) -> list[int]:
        """The first ``steps`` events of the first training tune that has that many: a real melody on which
        to compare probabilities (the greedy continuations of small models are often silence)."""
        import warnings

        import note_seq

        warnings.filterwarnings("ignore", module="pretty_midi")  # meta events on non-zero tracks
        subset = os.path.join(self.scratch, "corpus")
        for name in sorted(os.listdir(subset)):
            try:
                seq = note_seq.quantize_note_sequence(
                    note_seq.midi_file_to_note_sequence(os.path.join(subset, name)), 4)
            except Exception:  # noqa: BLE001 - tempo changes etc.: try the next tune
                continue
            melody = note_seq.Melody()
            melody.from_quantized_sequence(seq, instrument=seq.notes[0].instrument, gap_bars=10 ** 6,
                                           ignore_polyphonic_notes=True)
            if len(melody) >= steps:
                return [int(e) for e in list(melody)[:steps]]
        raise SystemExit(f"no tune of {steps} steps in {subset}")


def melodyflow(*args: str, log: str) -> dict:
    return json.loads(_run([sys.executable, "-m", "melodyflow.flows.cli", *args, "--json"], log))


def notes(midi_path: str) -> list[tuple[int, float, float]]:
    import note_seq

    seq = note_seq.midi_file_to_note_sequence(midi_path)
    ordered = sorted(seq.notes, key=lambda n: (n.start_time, n.pitch))
    return [(n.pitch, round(n.start_time, 6), round(n.end_time, 6)) for n in ordered]


def events_of(midi_path: str) -> list[int]:
    """The ``NUM_STEPS`` events of a generated MIDI file (what both models are then fed for the probabilities);
    after the last note: its note-off, then no-events."""
    import note_seq

    quantized = note_seq.quantize_note_sequence(note_seq.midi_file_to_note_sequence(midi_path), 4)
    melody = note_seq.Melody()
    melody.from_quantized_sequence(quantized, gap_bars=10 ** 6, ignore_polyphonic_notes=True)
    events = list(melody)
    return events + ([-1] + [-2] * (NUM_STEPS - len(events) - 1) if len(events) < NUM_STEPS else [])


def encode(config_name: str, events: list[int]):
    """``[steps, inputs]``: the melody squashed into the config's range and key and encoded, as Magenta does."""
    import numpy as np
    from note_seq.melodies_lib import Melody

    from melodyflow.transforms.melodies.configs import get_config

    config = get_config(config_name)
    melody = Melody(events)
    melody.squash(config.min_note, config.max_note, config.transpose_to_key)
    return np.asarray(config.encoder_decoder.get_inputs_batch([melody], full_length=True)[0], np.float32)


def keras_softmax(bundle: str, events: list[int]):
    import numpy as np

    from melodyflow.models.bundles.bundle import load_bundle

    model, meta = load_bundle(bundle)
    logits = np.asarray(model(encode(meta["config"], events)[None], training=False))[0].astype(np.float64)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return probs / probs.sum(axis=-1, keepdims=True)


def exact_softmax(mag: str, config: str, events: list[int]):
    """The baseline: Magenta's equations in float64 on the bundle's raw tensors. Both float32 implementations
    (Magenta's session, the imported Keras model) are measured against it, so rounding shows as rounding."""
    from melodyflow.models.bundles.magenta_checkpoint import read_generator_bundle
    from melodyflow.models.bundles.magenta_weights import magenta_softmax

    return magenta_softmax(read_generator_bundle(mag).tensors, encode(config, events))


def compare(magenta: Magenta, config: str, size: str, mag: str, primer_name: str) -> dict:
    import numpy as np

    work = os.path.join(magenta.scratch, "compare", os.path.basename(mag)[:-len(".mag")])
    log = os.path.join(magenta.scratch, "melodyflow.log")
    imported = os.path.join(work, "imported")
    shutil.rmtree(imported, ignore_errors=True)  # import-magenta never overwrites; this is the bench's scratch
    result = melodyflow("import-magenta", mag, imported, log=log)
    primer = PRIMERS[primer_name]
    ref_midi = magenta.greedy(mag, primer, os.path.join(work, f"magenta-{primer_name}"))
    out = os.path.join(work, f"melodyflow-{primer_name}")
    shutil.rmtree(out, ignore_errors=True)
    index = melodyflow("generate", imported, "--output", out, "--primer-melody",
                       json.dumps(magenta_effective_primer(primer)), "--temperature", "0",
                       "--num-outputs", "1", "--num-steps", str(NUM_STEPS), "--qpm", str(QPM), log=log)
    ours_midi = os.path.join(out, index["primers"][0]["outputs"][0]["midi"])
    events, tune = events_of(ref_midi), magenta.tune()
    p_ref, p_tune = magenta.softmax(mag, [events, tune], os.path.join(work, f"softmax-{primer_name}.json"))
    p_ours, p_tune_ours = keras_softmax(imported, events), keras_softmax(imported, tune)
    exact, exact_tune = exact_softmax(mag, config, events), exact_softmax(mag, config, tune)
    ref_notes, our_notes = notes(ref_midi), notes(ours_midi)
    primer_end = len(magenta_effective_primer(primer)) * 60.0 / QPM / 4
    return {"config": config, "size": size, "layers": result["rnn_layer_sizes"], "primer": primer_name,
            "train_steps": int(os.path.basename(mag)[:-len(".mag")].rsplit("_", 1)[1]),
            "steps_compared": int(p_ref.shape[0]), "max_abs_dp": float(np.max(np.abs(p_ref - p_ours))),
            "tune_steps": len(tune), "tune_max_abs_dp": float(np.max(np.abs(p_tune - p_tune_ours))),
            "magenta_vs_exact": float(max(np.max(np.abs(p_ref - exact)), np.max(np.abs(p_tune - exact_tune)))),
            "melodyflow_vs_exact": float(max(np.max(np.abs(p_ours - exact)), np.max(np.abs(p_tune_ours - exact_tune)))),
            "notes_magenta": len(ref_notes), "notes_melodyflow": len(our_notes),
            "generated_notes": sum(1 for n in ref_notes if n[1] >= primer_end - 1e-9),
            "greedy_equal": ref_notes == our_notes, "magenta_notes": ref_notes, "melodyflow_notes": our_notes,
            "first_difference": first_difference(events, events_of(ours_midi), p_ref)}


def first_difference(magenta_events: list[int], melodyflow_events: list[int], p_ref) -> dict | None:
    """Where the two melodies part, and how close Magenta's two most likely events were there: at temperature
    0.001 Magenta still draws, and takes the second of two events whose log-probabilities differ by ``gap``
    with probability ``1 / (1 + exp(gap / 0.001))``."""
    import math

    import numpy as np

    step = next((i for i, (a, b) in enumerate(zip(magenta_events, melodyflow_events)) if a != b), None)
    if step is None or step == 0:
        return None
    top = np.sort(p_ref[step - 1])[::-1]
    gap = float(math.log(top[0] / top[1]))
    return {"step": step, "log_gap": gap, "p_second_at_0.001": 1.0 / (1.0 + math.exp(min(gap / 0.001, 700.0)))}


def print_table(rows: list[dict]) -> None:
    print(f"\n{'config':<13} {'layers':<8} {'steps':>5} {'primer':<7} {'max |dp|':>9} {'tune |dp|':>9} "
          f"{'M err':>8} {'mf err':>8} {'notes M/mf':>10} {'generated':>9}  greedy notes equal")
    for r in rows:
        print(f"{r['config']:<13} {'x'.join(map(str, r['layers'])):<8} {r['train_steps']:>5} {r['primer']:<7} "
              f"{r['max_abs_dp']:>9.2e} {r['tune_max_abs_dp']:>9.2e} {r['magenta_vs_exact']:>8.1e} "
              f"{r['melodyflow_vs_exact']:>8.1e} {r['notes_magenta']:>5}/{r['notes_melodyflow']:<4} "
              f"{r['generated_notes']:>9}  {'yes' if r['greedy_equal'] else 'NO'}")
        if r["first_difference"]:
            d = r["first_difference"]
            print(f"{'':>13} first difference at step {d['step']}: the two most likely events' log-probabilities "
                  f"differ by {d['log_gap']:.4f}, so at temperature 0.001 Magenta draws the second with "
                  f"probability {d['p_second_at_0.001']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    venv = os.environ.get("MAGENTA_VENV", os.path.join(ROOT, "..", "magenta-venv"))
    parser.add_argument("--magenta-venv", default=venv,
                        help="the venv setup.sh made (default: $MAGENTA_VENV or ../magenta-venv)")
    parser.add_argument("--scratch", default=os.path.join(ROOT, "..", "magenta-scratch", "equality"))
    parser.add_argument("--corpus", default=CORPUS)
    parser.add_argument("--files", type=int, default=40, help="Nottingham files to train on (default 40)")
    parser.add_argument("--configs", default="basic_rnn,lookback_rnn")
    parser.add_argument("--sizes", default="small,default", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--steps", type=int, default=50, help="Magenta training steps (default 50)")
    parser.add_argument("--primers", default=",".join(PRIMERS), help=f"of {', '.join(PRIMERS)}")
    parser.add_argument("--json", default=None, help="also write every row (with the note lists) here")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.magenta_venv, "bin", "python")):
        print(f"no Magenta venv at {args.magenta_venv}: run bash {REFERENCE}/setup.sh DIR", file=sys.stderr)
        return 2
    os.makedirs(args.scratch, exist_ok=True)
    magenta = Magenta(os.path.abspath(args.magenta_venv), os.path.abspath(args.scratch))
    rows, started = [], time.monotonic()
    for config in args.configs.split(","):
        records = magenta.dataset(config, args.corpus, args.files)
        for size in args.sizes.split(","):
            mag = magenta.bundle(config, size, records, args.steps)
            for primer_name in args.primers.split(","):
                rows.append(compare(magenta, config, size, mag, primer_name))
                print_table(rows[-1:])
    print_table(rows)
    print(f"\nMagenta trained on {args.files} Nottingham tunes per model; greedy = temperature "
          f"0.001, {NUM_STEPS} steps at {QPM:g} qpm; {time.monotonic() - started:.0f} s in all. Logs: {args.scratch}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print("max |dp|: Magenta vs melodyflow, every next-step probability over the 128 steps of primer + Magenta's "
          "continuation; tune |dp|: the same over the first 256 steps of a training tune; M err / mf err: Magenta's / "
          "melodyflow's largest difference from the exact (float64) result on both; generated: notes after the primer")
    # Within 1e-5, or (where float32 rounding alone exceeds that) no further from the exact result than Magenta.
    ok = all(r["greedy_equal"] and (max(r["max_abs_dp"], r["tune_max_abs_dp"]) <= 1e-5
                                    or r["melodyflow_vs_exact"] <= r["magenta_vs_exact"]) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
