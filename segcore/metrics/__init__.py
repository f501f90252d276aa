"""Metrics: pure functions of arrays and tensors, the empty case handled."""
