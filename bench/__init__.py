"""Benchmarks of the serving path (``make bench``) and the workload replay (``make replay``)."""
