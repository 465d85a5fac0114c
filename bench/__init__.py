"""Benchmarks of Switchboard's doors; run with `make bench` (python -m bench)."""
