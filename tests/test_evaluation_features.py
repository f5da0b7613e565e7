"""Per-melody features on hand-made melodies whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from melodyflow.models.evaluation import features as F

# One bar: C D E F (eighths), G (quarter), note-off, a quarter's rest.
SCALE_BAR = [60, -2, 62, -2, 64, -2, 65, -2, 67, -2, -2, -2, -1, -2, -2, -2]
QUARTERS = [60, -2, -2, -2] * 4  # one bar of quarter-note Cs
EIGHTHS = [60, -2, 62, -2] * 4  # one bar of eighths


def test_notes_end_at_the_next_event_or_the_melody_end():
    notes = F.notes_of([-2, 60, -2, -1, 62, 64, -2, -2])
    assert notes.onsets.tolist() == [1, 4, 5]
    assert notes.pitches.tolist() == [60, 62, 64]
    assert notes.lengths.tolist() == [2, 1, 3]
    assert notes.steps == 8


def test_scale_bar_features():
    f = F.melody_features(SCALE_BAR)
    assert f["pitch_class_entropy"] == pytest.approx(math.log2(5))
    assert f["scale_consistency"] == 1.0
    assert f["pitch_range"] == 7
    assert f["distinct_pitches"] == 5
    assert f["mean_abs_interval"] == pytest.approx((2 + 2 + 1 + 2) / 4)
    hist = dict(zip(F.NOTE_LENGTH_BINS, f["note_length_histogram"]))
    assert hist["2"] == pytest.approx(0.8) and hist["4"] == pytest.approx(0.2) and sum(hist.values()) == 1.0
    assert f["note_density"] == 5.0
    assert f["empty_beat_rate"] == 0.25  # the last beat is a rest
    assert math.isnan(f["groove_consistency"]) and math.isnan(f["bar_repetition"])  # one bar only


def test_chromatic_run_has_maximal_entropy_and_seven_twelfths_in_scale():
    f = F.melody_features(list(range(60, 72)))
    assert f["pitch_class_entropy"] == pytest.approx(math.log2(12))
    assert f["scale_consistency"] == pytest.approx(7 / 12)
    assert f["note_length_histogram"][0] == 1.0  # every note a 16th
    assert f["empty_beat_rate"] == 0.0


def test_minor_melody_fits_its_relative_major_scale():
    a_minor = [57, 59, 60, 62, 64, 65, 67, 69]
    assert F.melody_features(a_minor)["scale_consistency"] == 1.0


def test_groove_consistency_counts_differing_onset_steps_between_consecutive_bars():
    # Quarters then eighths: onsets differ at steps 2, 6, 10, 14 of the bar -> 4/16 apart.
    assert F.melody_features(QUARTERS + EIGHTHS)["groove_consistency"] == pytest.approx(0.75)
    assert F.melody_features(QUARTERS * 3)["groove_consistency"] == 1.0


def test_bar_repetition_counts_bars_equal_to_an_earlier_one():
    assert F.melody_features(QUARTERS + QUARTERS + EIGHTHS + QUARTERS)["bar_repetition"] == pytest.approx(2 / 3)
    assert F.melody_features(QUARTERS + EIGHTHS)["bar_repetition"] == 0.0
    partial = QUARTERS + QUARTERS[:8]  # an incomplete last bar is not a bar
    assert math.isnan(F.melody_features(partial)["bar_repetition"])


def test_melodies_without_notes_define_only_what_they_can():
    f = F.melody_features([-2] * 32)
    assert math.isnan(f["pitch_class_entropy"]) and math.isnan(f["scale_consistency"])
    assert math.isnan(f["pitch_range"]) and math.isnan(f["mean_abs_interval"])
    assert np.isnan(f["note_length_histogram"]).all()
    assert f["distinct_pitches"] == 0 and f["note_density"] == 0 and f["empty_beat_rate"] == 1.0
    one_note = F.melody_features([60] + [-2] * 15)
    assert one_note["pitch_range"] == 0 and math.isnan(one_note["mean_abs_interval"])
    assert one_note["pitch_class_entropy"] == 0.0


def test_feature_table_stacks_scalars_and_histograms():
    table = F.feature_table([SCALE_BAR, QUARTERS + EIGHTHS, [-2] * 4])
    assert table["pitch_range"].shape == (3,) and table["note_length_histogram"].shape == (3, len(F.NOTE_LENGTH_BINS))
    assert table["distinct_pitches"].tolist() == [5.0, 2.0, 0.0]
    assert {f.name for f in F.FEATURES} == set(table)


def test_stall_share_counts_steps_beyond_a_bar_without_a_note_start():
    assert F.stall_share([60] + [-2] * 47) == pytest.approx(32 / 48)
    assert F.stall_share(QUARTERS * 3) == 0.0
    # From step 16 on: a rest of 40 steps before the first note start counts from that start.
    assert F.stall_share([60] * 16 + [-1] + [-2] * 39 + [62] * 8, start=16) == pytest.approx(24 / 48)


def test_loop_share_counts_the_third_identical_bar_in_a_row_onwards():
    assert F.loop_share(QUARTERS * 3 + EIGHTHS) == pytest.approx(1 / 2)
    assert F.loop_share(QUARTERS * 2 + EIGHTHS * 2) == 0.0  # one repetition is music
    assert F.loop_share(EIGHTHS + QUARTERS * 4, start=16) == pytest.approx(2 / 2)
    assert F.loop_share([60] + [-2] * 63) == 0.0  # a held note is a stall, not a loop
