"""Workflows made of runs: one meaning of "seed", sweeps, cross-validation, the lr finder, comparisons with a verdict.
Imports every layer below; nothing imports it but the package's ``__init__`` and the scripts."""
