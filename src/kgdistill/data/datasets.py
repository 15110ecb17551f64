"""The dataset registry and :func:`load_kg`: a name (``yago11k``) or a folder path -> :class:`KG`.

Names resolve under a data root: the ``root`` argument (``--data-root``), else the ``KGDISTILL_DATA``
environment variable. YAGO11k is also bundled inside the package (``kgdistill/data/bundled/yago11k``, gzipped,
with its provenance and licence note), so ``load_kg("yago11k")`` works with no data root at all.
A folder path is read by the reader that fits the files it holds (see :func:`detect_reader`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from kgdistill.catalog import DATASET_INFO, data_root
from kgdistill.data.kg import KG, build_kg
from kgdistill.data.raw import RawKG, open_text, resolve_file
from kgdistill.data.readers import read_hyte, read_openke, read_point_ids, read_static_names
from kgdistill.data.resplit import resplit as _resplit
from kgdistill.errors import DataError
from kgdistill.registry import Registry

__all__ = [
    "BUNDLED",
    "DATASETS",
    "DatasetEntry",
    "data_root",
    "detect_reader",
    "load_kg",
    "read_raw",
]

BUNDLED = Path(__file__).parent / "bundled"


@dataclass(frozen=True)
class DatasetEntry:
    """A known benchmark: its folder under the data root and its reader."""

    folder: str
    reader: Callable[..., RawKG]
    kind: str
    description: str
    bundled: bool = False


DATASETS: Registry[DatasetEntry] = Registry("dataset")

#: the reader of each built-in dataset; folders, kinds and descriptions are in :data:`kgdistill.catalog.DATASET_INFO`
_READERS: dict[str, Callable[..., RawKG]] = {
    "yago11k": read_hyte,
    "wikidata12k": read_hyte,
    "icews14": partial(read_point_ids, origin="2014-01-01"),
    "icews14_forecasting": partial(read_point_ids, origin="2014-01-01", divisor=24),
    "fb15k237": read_static_names,
    "wn18rr": read_static_names,
    "fb15k237n": read_openke,
}
_ENTRIES = {
    name: DatasetEntry(info.folder, _READERS[name], info.kind, info.description, info.bundled)
    for name, info in DATASET_INFO.items()
}
for _name, _entry in _ENTRIES.items():
    DATASETS.register(_name)(_entry)


def detect_reader(folder: Path) -> Callable[..., RawKG]:
    """Pick a reader from the files in ``folder``."""
    if any((folder / f).is_file() for f in ("train2id.txt", "train2id.txt.gz")):
        return read_openke
    train = resolve_file(folder, "train.txt")
    first = next((ln for ln in open_text(train) if ln.strip()), "")
    if not first:
        raise DataError("split is empty", path=train)
    ncols = len(first.split("\t"))
    if ncols == 3:
        return read_static_names
    if ncols == 5 and not first.split("\t")[3].lstrip("-").isdigit():
        return read_hyte
    if ncols in (4, 5):
        return read_point_ids
    raise DataError(
        f"cannot tell the format from the first line ({ncols} columns); "
        "use kgdistill.data.read_table with a column mapping",
        path=train,
        line=1,
    )


def read_raw(
    name_or_path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> RawKG:
    """Read a registered dataset (under the data root, or bundled) or any dataset folder."""
    text = str(name_or_path)
    if text in DATASETS:
        entry = DATASETS.get(text)
        key = text.strip().lower().replace("-", "_")
        base = data_root(root)
        looked = []
        if base is not None:
            folder = base / entry.folder
            if folder.is_dir():
                return entry.reader(folder, name=key)
            looked.append(str(folder))
        if entry.bundled:
            return entry.reader(BUNDLED / key, name=key)
        where = f" (looked in {', '.join(looked)})" if looked else ""
        raise DataError(
            f"dataset '{text}' not found{where}: pass --data-root or set KGDISTILL_DATA to the "
            f"folder that holds '{entry.folder}'"
        )
    folder = Path(text).expanduser()
    if folder.is_dir():
        for (
            entry
        ) in _ENTRIES.values():  # a copy of a known benchmark keeps its reader (ICEWS dates)
            if folder.resolve().as_posix().endswith("/" + entry.folder):
                return entry.reader(folder)
        return detect_reader(folder)(folder)
    raise DataError(
        f"'{text}' is neither a known dataset ({', '.join(DATASETS.names())}) nor a folder"
    )


def load_kg(
    name_or_path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    resplit: Mapping[str, Any] | None = None,
    **protocol: Any,
) -> KG:
    """Read a dataset and build its :class:`KG`; ``protocol`` goes to :func:`build_kg`.

    Args:
        resplit: keyword arguments of :func:`kgdistill.data.resplit.resplit` (pool, expand into yearly facts,
            split at random) applied before the time protocol; ``None``: the dataset's own split.
    """
    raw = read_raw(name_or_path, root=root)
    if resplit is not None:
        raw = _resplit(raw, **resplit)
    return build_kg(raw, **protocol)
