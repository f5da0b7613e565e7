"""Melody generation from a bundle: temperature sampling and Magenta-style beam search, batched.

All outputs of one primer advance together: ``num_outputs × beam_size × branch_factor`` sequences
form one batch per forward step, with state carried between steps: LSTM (and attention-window) state
for the RNN configs, cached keys and values for ``music_transformer`` (its
``IncrementalDecoder``).  A stepper has ``zero_state``, ``step`` and ``reorder`` (select batch rows).

Beam search follows Magenta's ``beam_search``: every iteration branches each beam ``branch_factor``
times, samples ``steps_per_iteration`` steps per branch, and keeps the ``beam_size`` branches with the
highest log-likelihood; the first iteration takes the remainder steps.
"""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from melodyflow.transforms.melodies.configs import get_config


class GenerationError(ValueError):
    """Options or primer do not allow generation (e.g. a primer longer than num_steps)."""


@dataclass(frozen=True)
class GenerationOptions:
    num_outputs: int = 16
    num_steps: int = 128
    temperature: float = 1.0  # 0: greedy, the most likely event at every step
    beam_size: int = 1
    branch_factor: int = 1
    steps_per_iteration: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.num_outputs, self.num_steps, self.beam_size, self.branch_factor, self.steps_per_iteration) < 1:
            raise GenerationError("num_outputs, num_steps, beam_size, branch_factor and steps_per_iteration "
                                  "must all be at least 1")
        if not self.temperature >= 0:
            raise GenerationError("temperature must be positive, or 0 for greedy generation")


@dataclass
class GeneratedMelody:
    melody: Any  # note_seq.Melody including the primer, in the primer's key and register
    primer_steps: int
    log_likelihood: float
    shift: int = 0  # semitones that moved the primer into the model's range and key (undone in ``melody``)

    def model_events(self) -> list[int]:
        """The events as the model produced them (in its range and key), for scoring under the model."""
        return [e + self.shift if e >= 0 else e for e in self.melody]


class _Stepper:
    """One-step inference with carried LSTM state: O(steps) instead of rerunning the whole sequence.

    Built from the trained Keras model's own layers (LSTM cells, attention projections, logits), so it
    computes exactly what the sequence model computes at the last position.
    """

    def __init__(self, model, hparams: dict):
        import tensorflow as tf

        self.sizes = list(hparams["rnn_layer_sizes"])
        self.cells = [model.get_layer(f"lstm_{i}").cell for i in range(len(self.sizes))]
        self.attn_length = int(hparams.get("attn_length") or 0)
        self.attention = model.get_layer("attention") if self.attn_length else None
        self.logits = model.get_layer("logits")
        self._step = tf.function(self._step_impl, reduce_retracing=True)

    def zero_state(self, batch: int) -> list[np.ndarray]:
        state = []
        for units in self.sizes:
            state += [np.zeros((batch, units), np.float32), np.zeros((batch, units), np.float32)]
        if self.attn_length:
            state += [np.zeros((batch, self.attn_length, self.sizes[0]), np.float32),
                      np.zeros((batch, self.attn_length), np.float32)]  # past outputs, validity mask
        return state

    def _step_impl(self, x, state):
        import tensorflow as tf

        new_state = []
        for i, cell in enumerate(self.cells):
            x, (h, c) = cell(x, [state[2 * i], state[2 * i + 1]], training=False)
            new_state += [h, c]
            if i == 0 and self.attn_length:
                past, valid = state[-2], state[-1]
                att = self.attention
                scores = tf.einsum("bd,bld->bl", att.query(x), att.key(past)) * att.scale
                scores = tf.where(valid > 0, scores, tf.fill(tf.shape(scores), -1e9))
                weights = tf.nn.softmax(scores, axis=-1) * valid
                context = tf.einsum("bl,bld->bd", weights, past)
                out = tf.concat([x, context], axis=-1)
                past = tf.concat([past[:, 1:], x[:, None]], axis=1)
                valid = tf.concat([valid[:, 1:], tf.ones_like(valid[:, :1])], axis=1)
                x = out
        if self.attn_length:
            new_state += [past, valid]
        return self.logits(x), new_state

    def step(self, x: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        logits, new_state = self._step(x, state)
        return np.asarray(logits), [np.asarray(s) for s in new_state]

    @staticmethod
    def reorder(state: list, indices) -> list:
        return [s[indices] for s in state]


def make_stepper(model, metadata: dict):
    """The one-step decoder for a bundle's model: LSTM state or the Transformer's key/value cache."""
    from melodyflow.models.hparams import TransformerHParams, hparams_from_dict

    hparams = hparams_from_dict(metadata["config"], metadata["hparams"])
    if isinstance(hparams, TransformerHParams):
        from melodyflow.models.network.music_transformer import IncrementalDecoder

        return IncrementalDecoder(model, hparams)
    return _Stepper(model, metadata["hparams"])


class MelodyGenerator:
    """A loaded bundle, ready to generate; safe to share between threads."""

    def __init__(self, model, metadata: dict):
        self.model = model
        self.metadata = metadata
        self.config = get_config(metadata["config"])
        self.encoder = self.config.encoder_decoder
        self.stepper = make_stepper(model, metadata)
        self._lock = threading.Lock()

    def generate(self, primer_melody, options: GenerationOptions, seed_offset: int = 0) -> list[GeneratedMelody]:
        """``options.num_outputs`` melodies continuing ``primer_melody`` up to ``num_steps`` steps."""
        primer = copy.deepcopy(primer_melody)
        # Into the model's range and key, and back afterwards (as Magenta does): outputs stay in the primer's key.
        shift = primer.squash(self.config.min_note, self.config.max_note, self.config.transpose_to_key)
        if len(primer) > options.num_steps:
            raise GenerationError(f"the primer is {len(primer)} steps long, more than --num-steps "
                                  f"{options.num_steps}: take a few bars of it with --primer-bars N (and "
                                  "--primer-start-bar K), or raise --num-steps")
        if len(primer) == 0:
            raise GenerationError("the primer melody is empty")
        rng = np.random.default_rng([options.seed, seed_offset])
        to_generate = options.num_steps - len(primer)
        beams = options.num_outputs * options.beam_size
        sequences = [copy.deepcopy(primer) for _ in range(beams)]
        with self._lock:
            state = self.stepper.zero_state(beams)
            for position in range(len(primer) - 1):  # run the primer through, all but its last event
                x = np.asarray([self.encoder.events_to_input(primer, position)] * beams, np.float32)
                _, state = self.stepper.step(x, state)
            scores = np.zeros(beams)
            if to_generate and options.beam_size == 1 and options.branch_factor == 1:
                state = self._extend(sequences, state, scores, to_generate, options.temperature, rng)
            elif to_generate:
                iterations = math.ceil(to_generate / options.steps_per_iteration)
                first = to_generate - (iterations - 1) * options.steps_per_iteration
                for it in range(iterations):
                    steps = first if it == 0 else options.steps_per_iteration
                    sequences, state, scores = self._branch(sequences, state, scores, options.branch_factor)
                    state = self._extend(sequences, state, scores, steps, options.temperature, rng)
                    sequences, state, scores = self._prune(sequences, state, scores, options)
        best = []
        group = len(sequences) // options.num_outputs
        for i in range(options.num_outputs):
            idx = i * group + int(np.argmax(scores[i * group:(i + 1) * group]))
            best.append(GeneratedMelody(sequences[idx], len(primer), float(scores[idx]), shift))
        for result in best:
            result.melody.transpose(-shift)
        return best

    def _extend(self, sequences, state, scores, steps, temperature, rng):
        for _ in range(steps):
            x = np.asarray([self.encoder.events_to_input(seq, len(seq) - 1) for seq in sequences], np.float32)
            logits, state = self.stepper.step(x, state)
            if temperature == 0:  # the limit T -> 0, exactly: no draw, so no near-tied second choice
                for b, seq in enumerate(sequences):  # (probability 1: scores stay)
                    seq.append(self.encoder.class_index_to_event(int(np.argmax(logits[b])), seq))
                continue
            logits = logits / temperature
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            for b, seq in enumerate(sequences):
                choice = int(rng.choice(len(probs[b]), p=probs[b]))
                scores[b] += math.log(max(probs[b][choice], 1e-300))
                seq.append(self.encoder.class_index_to_event(choice, seq))
        return state

    def _branch(self, sequences, state, scores, factor):
        if factor == 1:
            return sequences, state, scores
        seqs = [copy.deepcopy(s) for s in sequences for _ in range(factor)]
        rows = np.repeat(np.arange(len(sequences)), factor)
        return seqs, self.stepper.reorder(state, rows), np.repeat(scores, factor)

    def _prune(self, sequences, state, scores, options):
        """Keep the best ``beam_size`` branches within each output's group."""
        group = len(sequences) // options.num_outputs
        keep = []
        for i in range(options.num_outputs):
            ranked = np.argsort(-scores[i * group:(i + 1) * group], kind="stable")[:options.beam_size]
            keep += [i * group + int(r) for r in ranked]
        return [sequences[k] for k in keep], self.stepper.reorder(state, keep), scores[keep]


_CACHE: dict[str, MelodyGenerator] = {}
_CACHE_LOCK = threading.Lock()


def load_generator(bundle_or_run_dir: str) -> MelodyGenerator:
    """Load a bundle once per process (Prefect's mapped tasks share it)."""
    from melodyflow.models.bundles.bundle import load_bundle, resolve_bundle

    url = resolve_bundle(bundle_or_run_dir)
    with _CACHE_LOCK:
        if url not in _CACHE:
            model, meta = load_bundle(url)
            _CACHE[url] = MelodyGenerator(model, meta)
        return _CACHE[url]
