"""Benchmark suite for optax_greedy (see bench/README.md)."""
