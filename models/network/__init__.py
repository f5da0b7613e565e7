"""Keras networks that map a melody's encoded inputs to next-event logits."""
