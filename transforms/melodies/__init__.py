"""melodies."""
