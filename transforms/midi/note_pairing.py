"""Tokenized events → notes and instruments with pretty_midi's pairing rules (compiled)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from melodyflow.transforms.midi.smf_tokenizer import CONTROL, NOTE_OFF, NOTE_ON, PITCHWHEEL, PROGRAM, TRACK_NAME


class PairedNotes(NamedTuple):
    """A file's notes and instruments as parallel arrays (numba returns named tuples, not objects)."""

    note_inst: np.ndarray  # per note: instrument index, pitch, velocity, start and end tick
    note_pitch: np.ndarray
    note_vel: np.ndarray
    note_start: np.ndarray
    note_end: np.ndarray
    inst_program: np.ndarray  # per instrument: program, channel, track-name event (or -1)
    inst_channel: np.ndarray
    inst_name: np.ndarray
    inst_cc: np.ndarray  # per instrument: its control-change list and pitch-bend list
    inst_pb: np.ndarray
    cc_list: np.ndarray  # per control change: the list it belongs to, and its event
    cc_event: np.ndarray
    pb_list: np.ndarray  # per pitch bend: the list it belongs to, and its event
    pb_event: np.ndarray


# One compiled pass replaying pretty_midi's pairing state machine; its state is shared by every branch,
# so it stays one function (longer than 80 lines).
@njit(cache=True)
def pair_notes(ev_track, ev_tick, ev_kind, ev_a, ev_b, ev_chan):
    """pretty_midi's ``_load_instruments`` over the recorded events (see the module docstring)."""
    n = ev_kind.shape[0]
    note_inst = np.empty(n, np.int64)
    note_pitch = np.empty(n, np.int64)
    note_vel = np.empty(n, np.int64)
    note_start = np.empty(n, np.int64)
    note_end = np.empty(n, np.int64)
    inst_program = np.empty(n, np.int64)
    inst_channel = np.empty(n, np.int64)
    inst_name = np.empty(n, np.int64)
    inst_cc = np.empty(n, np.int64)
    inst_pb = np.empty(n, np.int64)
    cc_list = np.empty(n, np.int64)
    cc_event = np.empty(n, np.int64)
    pb_list = np.empty(n, np.int64)
    pb_event = np.empty(n, np.int64)
    pool_start = np.empty(n, np.int64)
    pool_vel = np.empty(n, np.int64)
    pool_next = np.empty(n, np.int64)
    head = np.full(2048, -1, np.int64)
    tail = np.full(2048, -1, np.int64)
    inst_map = np.full(2048, -1, np.int64)
    straggler_cc = np.full(16, -1, np.int64)
    straggler_pb = np.full(16, -1, np.int64)
    touched = np.empty(n, np.int64)
    n_notes = n_inst = n_cc = n_pb = n_pool = n_lists = n_touched = 0
    program = np.zeros(16, np.int64)
    name_event = -1
    track = -1
    for i in range(n):
        if ev_track[i] != track:  # a new track: pretty_midi's per-track state starts afresh
            track = ev_track[i]
            for k in range(n_touched):
                head[touched[k]] = -1
                tail[touched[k]] = -1
                inst_map[touched[k]] = -1
            n_touched = 0
            program[:] = 0
            straggler_cc[:] = -1
            straggler_pb[:] = -1
            name_event = -1
        kind = ev_kind[i]
        ch = ev_chan[i]
        if kind == TRACK_NAME:
            name_event = i
        elif kind == PROGRAM:
            program[ch] = ev_a[i]
        elif kind == NOTE_ON:
            key = ch * 128 + ev_a[i]
            pool_start[n_pool] = ev_tick[i]
            pool_vel[n_pool] = ev_b[i]
            pool_next[n_pool] = -1
            if head[key] == -1:
                head[key] = n_pool
                touched[n_touched] = key
                n_touched += 1
            else:
                pool_next[tail[key]] = n_pool
            tail[key] = n_pool
            n_pool += 1
        elif kind == NOTE_OFF:
            key = ch * 128 + ev_a[i]
            if head[key] == -1:
                continue
            end_tick = ev_tick[i]
            closed = 0
            kept_head = -1
            kept_tail = -1
            node = head[key]
            while node != -1:
                nxt = pool_next[node]
                if pool_start[node] != end_tick:
                    slot = ch * 128 + program[ch]
                    if inst_map[slot] == -1:
                        inst_map[slot] = n_inst
                        touched[n_touched] = slot
                        n_touched += 1
                        inst_program[n_inst] = program[ch]
                        inst_channel[n_inst] = ch
                        inst_name[n_inst] = name_event
                        if straggler_cc[ch] != -1:
                            inst_cc[n_inst] = straggler_cc[ch]
                            inst_pb[n_inst] = straggler_pb[ch]
                        else:
                            inst_cc[n_inst] = n_lists
                            inst_pb[n_inst] = n_lists + 1
                            n_lists += 2
                        n_inst += 1
                    note_inst[n_notes] = inst_map[slot]
                    note_pitch[n_notes] = ev_a[i]
                    note_vel[n_notes] = pool_vel[node]
                    note_start[n_notes] = pool_start[node]
                    note_end[n_notes] = end_tick
                    n_notes += 1
                    closed += 1
                else:
                    pool_next[node] = -1
                    if kept_head == -1:
                        kept_head = node
                    else:
                        pool_next[kept_tail] = node
                    kept_tail = node
                node = nxt
            if closed > 0 and kept_head != -1:
                head[key] = kept_head
                tail[key] = kept_tail
            else:
                head[key] = -1
                tail[key] = -1
        elif kind == CONTROL or kind == PITCHWHEEL:
            slot = ch * 128 + program[ch]
            if inst_map[slot] != -1:
                cc, pb = inst_cc[inst_map[slot]], inst_pb[inst_map[slot]]
            else:
                if straggler_cc[ch] == -1:
                    straggler_cc[ch] = n_lists
                    straggler_pb[ch] = n_lists + 1
                    n_lists += 2
                cc, pb = straggler_cc[ch], straggler_pb[ch]
            if kind == CONTROL:
                cc_list[n_cc] = cc
                cc_event[n_cc] = i
                n_cc += 1
            else:
                pb_list[n_pb] = pb
                pb_event[n_pb] = i
                n_pb += 1
    return PairedNotes(note_inst[:n_notes], note_pitch[:n_notes], note_vel[:n_notes], note_start[:n_notes],
                       note_end[:n_notes], inst_program[:n_inst], inst_channel[:n_inst], inst_name[:n_inst],
                       inst_cc[:n_inst], inst_pb[:n_inst], cc_list[:n_cc], cc_event[:n_cc], pb_list[:n_pb],
                       pb_event[:n_pb])
