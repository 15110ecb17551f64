"""The immutable knowledge graph every later stage reads, and its construction from a :class:`RawKG`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from kgdistill.data.raw import Quirks, RawKG
from kgdistill.data.time import OPEN_HI, OPEN_LO, UNKNOWN, UNKNOWN_ANCHOR, TimeSpec, year_bins
from kgdistill.errors import ConfigError, DataError
from kgdistill.types import LongTensor

__all__ = ["KG", "build_kg"]

_MODIFIERS = ("", "since", "until")


@dataclass(frozen=True)
class KG:
    """A knowledge graph ready for training and evaluation.

    Attributes:
        name: dataset name.
        entity_labels / relation_labels: id -> label (``num_entities`` / ``num_relations`` long).
        time: how raw times map to time ids (``time.kind == "none"`` for a static graph).
        splits: split -> ``(n, 3)`` facts ``(h, r, t)`` or ``(n, 4)`` quadruples ``(h, r, t, tau)`` as modelled
            (interval facts may be repeated or split, see :mod:`kgdistill.data.time`).
        facts: split -> ``(m, 3)`` the original facts, one per line kept, for filtering.
        validity: split -> ``(m, 2)`` ``[lo, hi]`` of every original fact in anchor space (bins for intervals,
            ordinals for points), :data:`OPEN_LO` / :data:`OPEN_HI` when unknown; ``None`` when static.
        report: counts of lines, quirks handled (irregular dates, blank lines, duplicate rows, valid/test facts
            whose relation never occurs in train, ...), unseen entities and times; written into ``metrics.json``.

    Relations are the originals; reciprocal relations (``r + num_relations``) are added by the queries built in
    :mod:`kgdistill.data.batching`, so every query asks for a tail (tkbc, LibKGE).
    """

    name: str
    entity_labels: tuple[str, ...]
    relation_labels: tuple[str, ...]
    time: TimeSpec
    splits: Mapping[str, LongTensor]
    facts: Mapping[str, LongTensor]
    validity: Mapping[str, LongTensor] | None = None
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_entities(self) -> int:
        return len(self.entity_labels)

    @property
    def num_relations(self) -> int:
        return len(self.relation_labels)

    @property
    def num_times(self) -> int:
        return self.time.num_times

    @property
    def temporal(self) -> bool:
        return self.time.kind != "none"

    @cached_property
    def entity_ids(self) -> dict[str, int]:
        return {e: i for i, e in enumerate(self.entity_labels)}

    @cached_property
    def relation_ids(self) -> dict[str, int]:
        return {r: i for i, r in enumerate(self.relation_labels)}

    def id_maps(self) -> dict[str, list[str]]:
        """Labels of entities, relations and times, as stored in checkpoints."""
        return {
            "entity": list(self.entity_labels),
            "relation": list(self.relation_labels),
            "time": list(self.time.labels),
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return (
            f"KG({self.name!r}, entities={self.num_entities}, relations={self.num_relations}, "
            f"times={self.num_times}, {sizes})"
        )


def build_kg(
    raw: RawKG,
    *,
    granularity: Literal["year", "bins"] = "bins",
    min_bin_size: int = 300,
    interval_mode: Literal["start", "expand", "split"] = "start",
    unseen: Literal["keep", "drop"] = "keep",
) -> KG:
    """Apply the time protocol and the unseen-entity policy to a dataset read from disk.

    Args:
        granularity / min_bin_size / interval_mode: the interval protocol (see :mod:`kgdistill.data.time`).
        unseen: valid/test facts whose head or tail never occurs in train are ``keep`` (default: they are ranked
            like any other fact, as in LibKGE; the model has an untrained embedding for them) or ``drop``
            (PyKEEN). Either way their number is reported.
    """
    for key, value, allowed in (
        ("granularity", granularity, ("year", "bins")),
        ("interval_mode", interval_mode, ("start", "expand", "split")),
        ("unseen", unseen, ("keep", "drop")),
    ):
        if value not in allowed:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(allowed)}")
    if min_bin_size < 1:
        raise ConfigError(f"config key 'min_bin_size': must be >= 1, got {min_bin_size}")
    if "train" not in raw.splits:
        raise DataError(f"dataset {raw.name} has no train split")
    quirks = _unseen_relations(raw)
    report: dict[str, Any] = {
        "source": raw.source,
        "lines": {s: len(v) for s, v in raw.splits.items()},
        "quirks": quirks.to_dict(),
        "unseen_policy": unseen,
    }
    if raw.derivation is not None:
        report["derivation"] = raw.derivation
    quirks.log(raw.name)
    seen = np.zeros(len(raw.entity_labels), dtype=bool)
    seen[raw.splits["train"].triples[:, [0, 2]].ravel()] = True
    keep: dict[str, np.ndarray] = {}
    report["unseen_entity_facts"] = {}
    for s, sp in raw.splits.items():
        ok = seen[sp.triples[:, 0]] & seen[sp.triples[:, 2]]
        if s != "train":
            report["unseen_entity_facts"][s] = int((~ok).sum())
        keep[s] = ok if (unseen == "drop" and s != "train") else np.ones(len(sp), dtype=bool)
    facts = {s: torch.from_numpy(sp.triples[keep[s]].copy()) for s, sp in raw.splits.items()}
    for s, f in facts.items():
        if len(f) == 0:
            raise DataError(f"split '{s}' of {raw.name} is empty after dropping unseen entities")
    common = {
        "name": raw.name,
        "entity_labels": tuple(raw.entity_labels),
        "relation_labels": tuple(raw.relation_labels),
        "facts": facts,
    }
    if raw.kind == "none":
        return KG(time=TimeSpec(kind="none"), splits=facts, report=report, **common)
    if raw.kind == "point":
        spec, splits, validity = _point(raw, keep)
    else:
        spec, splits, validity = _interval(raw, keep, granularity, min_bin_size, interval_mode)
        report["time_protocol"] = {
            "granularity": granularity,
            "min_bin_size": min_bin_size,
            "interval_mode": interval_mode,
            "bins": len(spec.boundaries),
        }
    train_times = splits["train"][:, 3].unique()
    report["unseen_time_facts"] = {
        s: int((~torch.isin(q[:, 3], train_times)).sum()) for s, q in splits.items() if s != "train"
    }
    report["num_times"] = spec.num_times
    return KG(time=spec, splits=splits, validity=validity, report=report, **common)


def _unseen_relations(raw: RawKG) -> Quirks:
    """The reader's quirks plus ``relation_not_in_train``: one per valid/test fact whose relation never occurs in
    train (such a fact is kept and ranked; the model's embedding of that relation is untrained). ``raw`` is left
    untouched, so building twice does not count twice."""
    quirks = raw.quirks.copy()
    seen = np.zeros(len(raw.relation_labels), dtype=bool)
    seen[raw.splits["train"].triples[:, 1]] = True
    for s, sp in raw.splits.items():
        if s == "train":
            continue
        name = Path(sp.path).name
        for i in np.flatnonzero(~seen[sp.triples[:, 1]]).tolist():
            label = raw.relation_labels[int(sp.triples[i, 1])]
            quirks.add("relation_not_in_train", f"{name}:{int(sp.lines[i])} ({label})")
    return quirks


def _point(
    raw: RawKG, keep: Mapping[str, np.ndarray]
) -> tuple[TimeSpec, dict[str, LongTensor], dict[str, LongTensor]]:
    ordinals = np.unique(np.concatenate([sp.start[keep[s]] for s, sp in raw.splits.items()]))  # type: ignore[index]
    tmp = TimeSpec(kind="point", origin=raw.origin)
    labels = tuple(tmp._point_label(int(o)) for o in ordinals)
    spec = TimeSpec(
        kind="point", labels=labels, anchors=tuple(int(o) for o in ordinals), origin=raw.origin
    )
    splits, validity = {}, {}
    for s, sp in raw.splits.items():
        t = sp.start[keep[s]]  # type: ignore[index]
        tid = np.searchsorted(ordinals, t)
        splits[s] = torch.from_numpy(np.column_stack([sp.triples[keep[s]], tid]).astype(np.int64))
        validity[s] = torch.from_numpy(np.column_stack([t, t]).astype(np.int64))
    return spec, splits, validity


def _interval(
    raw: RawKG, keep: Mapping[str, np.ndarray], granularity: str, min_bin_size: int, mode: str
) -> tuple[TimeSpec, dict[str, LongTensor], dict[str, LongTensor]]:
    tr = raw.splits["train"]
    years = np.concatenate([tr.start, tr.end])  # type: ignore[list-item]
    years = years[years != UNKNOWN]
    bounds = np.asarray(
        year_bins(years.tolist(), granularity=granularity, min_bin_size=min_bin_size)
    )
    nb = len(bounds)
    unknown_code = len(_MODIFIERS) * nb

    def to_bin(y: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(bounds, y, side="right") - 1, 0, None)

    per_split: dict[
        str, tuple[np.ndarray, np.ndarray]
    ] = {}  # split -> (row index into facts, time code)
    validity = {}
    for s, sp in raw.splits.items():
        st, en = sp.start[keep[s]], sp.end[keep[s]]  # type: ignore[index]
        ks, ke = st != UNKNOWN, en != UNKNOWN
        sb, eb = to_bin(st), to_bin(en)
        validity[s] = torch.from_numpy(
            np.column_stack([np.where(ks, sb, OPEN_LO), np.where(ke, eb, OPEN_HI)]).astype(np.int64)
        )
        rows = np.arange(len(st))
        anchor = np.where(ks, sb, np.where(ke, eb, -1))
        start_code = np.where(anchor >= 0, anchor, unknown_code)
        if mode == "start" or (mode == "expand" and s != "train"):
            per_split[s] = (rows, start_code)
        elif mode == "expand":
            lo = np.where(ks, sb, eb)
            hi = np.where(ke, eb, sb)
            n = np.where(ks | ke, hi - lo + 1, 1)
            idx = np.repeat(rows, n)
            offset = np.arange(len(idx)) - np.repeat(np.cumsum(n) - n, n)
            code = np.where(anchor[idx] >= 0, lo[idx] + offset, unknown_code)
            per_split[s] = (idx, code)
        else:  # split: "since" at the start bin, "until" at the end bin, "unknown" when neither is known
            since = (rows[ks], 1 * nb + sb[ks])
            until = (rows[ke], 2 * nb + eb[ke])
            none = (rows[~ks & ~ke], np.full(int((~ks & ~ke).sum()), unknown_code))
            idx = np.concatenate([since[0], until[0], none[0]])
            code = np.concatenate([since[1], until[1], none[1]])
            order = np.argsort(idx, kind="stable")
            per_split[s] = (idx[order], code[order])
    codes = np.unique(np.concatenate([c for _, c in per_split.values()]))
    spec0 = TimeSpec(
        kind="interval",
        boundaries=tuple(int(b) for b in bounds),
        mode=mode,
        max_year=int(years.max()),
    )
    labels, anchors = [], []
    for c in codes.tolist():
        if c == unknown_code:
            labels.append("unknown")
            anchors.append(UNKNOWN_ANCHOR)
        else:
            labels.append(spec0.key(_MODIFIERS[c // nb], c % nb))
            anchors.append(c % nb)
    spec = TimeSpec(
        kind="interval",
        labels=tuple(labels),
        anchors=tuple(anchors),
        boundaries=spec0.boundaries,
        mode=mode,
        max_year=spec0.max_year,
    )
    splits = {}
    for s, (idx, code) in per_split.items():
        trip = raw.splits[s].triples[keep[s]][idx]
        splits[s] = torch.from_numpy(
            np.column_stack([trip, np.searchsorted(codes, code)]).astype(np.int64)
        )
    return spec, splits, validity
