"""Evaluation: held-out metrics, per-melody features, set comparison, copy detection, ranking."""
