"""Generation: primers from MIDI files, sampling and beam search, and the files written per output."""
