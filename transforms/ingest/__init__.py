"""Score files (MIDI, MusicXML, ABC) → NoteSequence batches: plan, per-file conversion, dedup, Beam job."""
