"""The measurement lab: reproduction of every experiment, the benchmark, the README's pictures (see lab/README.md)."""
