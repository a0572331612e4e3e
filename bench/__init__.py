"""The benchmark: see bench/run.py and bench/RESULTS.md."""
