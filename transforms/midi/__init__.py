"""Standard MIDI Files without mido or pretty_midi: the compiled reader and a structural pre-scan.

note-seq's ``midi_to_note_sequence`` is the reference; ``compiled_reader`` produces its exact bytes for
the well-formed subset of files and returns ``None`` for anything else, which then goes to note-seq
(``tests/test_midi_compiled_reader.py`` compares the two on files built to hit each rule).
"""
