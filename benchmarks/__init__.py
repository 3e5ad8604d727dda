"""Benchmarks: `python -m benchmarks.run [name ...]` writes results into docs/benchmarks.md."""
