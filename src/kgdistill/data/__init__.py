"""Data: readers of benchmark formats, the time protocol, the immutable KG, filters and batches."""

from kgdistill.data.datasets import DATASETS, load_kg, read_raw
from kgdistill.data.kg import KG, build_kg
from kgdistill.data.readers import (
    read_hyte,
    read_openke,
    read_point_ids,
    read_static_names,
    read_table,
)
from kgdistill.data.time import TimeSpec

__all__ = [
    "DATASETS",
    "KG",
    "TimeSpec",
    "build_kg",
    "load_kg",
    "read_hyte",
    "read_openke",
    "read_point_ids",
    "read_raw",
    "read_static_names",
    "read_table",
]
