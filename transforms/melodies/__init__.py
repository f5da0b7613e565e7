"""NoteSequences → monophonic melodies → training records, with Magenta's Melody RNN rules.

Two implementations of the same rules live side by side, on purpose:
- the **reference** (``extraction_reference``, and ``encoding.encode_melody``) calls note-seq's own
  classes, exactly as Magenta's pipeline does; it is slow (proto copies, per-step encoder calls) but is
  note-seq by definition;
- the **compiled** path (``extraction_compiled`` with its ``compiled_*`` kernels, ``encoding_compiled``)
  replays those rules on arrays with the same arithmetic in the same order, an order of magnitude faster.
The compiled path hands any input it does not reproduce by construction to the reference, and the tests
(``test_melody_extraction_compiled.py``, ``test_melody_encoding.py``) compare the two on hand-made and
random sequences: same melodies, same counters, same bytes.
"""
