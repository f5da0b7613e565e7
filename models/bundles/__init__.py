"""Versioned model bundles: what generation, evaluation and fine-tuning load."""
