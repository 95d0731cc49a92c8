"""Workflows made of runs: seeds, sweeps, cross-validation, the lr finder, comparisons (the top layer)."""
