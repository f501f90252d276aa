"""Evaluation: a trained run or a results file scored into an eval folder, runs compared, speed measured."""
