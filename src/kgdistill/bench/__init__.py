"""Benchmarks that ship with the package (``kgdistill benchmark NAME``)."""

from kgdistill.bench.temporal_kd import run_temporal_kd

__all__ = ["run_temporal_kd"]
