"""A documented non-standard protocol: intervals expanded into yearly facts, then a random split.

Temporal KGs such as YAGO11k and Wikidata12k come with a standard split of interval facts
``(h, r, t, [start, end])``. Some papers report numbers far above the literature's under that split without stating
their protocol; a likely cause is that the facts were expanded into one fact per year of their interval and the
yearly facts were then split at random, so that the years next to a test fact sit in train. This module builds
that setting explicitly, so its numbers can be produced and kept apart from the standard ones
(``data.resplit`` in a run config):

1. pool the facts of every split of the dataset (train, valid, test);
2. ``expand: year``: a fact whose interval has both years known becomes one fact per year ``start..end``
   (inclusive); a fact with one year known stays one fact at that year; a fact with neither stays one fact with
   an unknown time (``expand: none``: every fact stays as it is);
3. identical ``(h, r, t, year)`` facts are kept once;
4. a seeded random permutation deals ``test`` and ``valid`` fractions of the facts out, the rest is train.

Each new fact is a point in time (start = end = its year); the time protocol and the time-aware filter then work
on them as on any interval data (``time.granularity: year`` gives one time id per year).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from kgdistill.data.raw import RawKG, RawSplit
from kgdistill.data.time import UNKNOWN
from kgdistill.errors import ConfigError

__all__ = ["resplit"]

log = logging.getLogger(__name__)


def resplit(
    raw: RawKG,
    *,
    expand: Literal["year", "none"] = "year",
    valid: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
) -> RawKG:
    """``raw`` with its splits pooled, (optionally) expanded into yearly facts and split again at random.

    Args:
        expand: ``year`` (one fact per year of a known interval) or ``none``.
        valid / test: fractions of the pooled (expanded) facts dealt to valid and test.
        seed: seed of the permutation.

    Returns:
        a new :class:`RawKG` (``raw`` is left untouched) whose ``derivation`` records the counts; a split's
        ``lines`` are 1-based row numbers of the new split (its ``path`` names the protocol).

    Raises:
        ConfigError: fractions out of range, or ``expand: year`` on a static or point-time dataset.
    """
    if expand not in ("year", "none"):
        raise ConfigError(f"config key 'data.resplit.expand': {expand!r} is not one of year, none")
    if valid <= 0 or test <= 0 or valid + test >= 1:
        raise ConfigError(
            f"config keys 'data.resplit.valid' / 'test': need valid > 0, test > 0 and valid + test < 1, "
            f"got {valid} / {test}"
        )
    if expand == "year" and raw.kind != "interval":
        raise ConfigError(
            f"config key 'data.resplit.expand': 'year' needs interval times; {raw.name} has "
            f"{'no times' if raw.kind == 'none' else 'point times'} (use expand: none)"
        )
    temporal = raw.kind != "none"
    triples = np.concatenate([sp.triples for sp in raw.splits.values()])
    pooled = len(triples)
    if temporal:
        start = np.concatenate([sp.start for sp in raw.splits.values()])  # type: ignore[misc]
        end = np.concatenate([sp.end for sp in raw.splits.values()])  # type: ignore[misc]
    if expand == "year":
        known = (start != UNKNOWN) & (end != UNKNOWN)
        lo = np.where(start != UNKNOWN, start, end)  # one year known: that year (or UNKNOWN)
        hi = np.where(known, end, lo)
        n = hi - lo + 1
        idx = np.repeat(np.arange(pooled), n)
        year = lo[idx] + (np.arange(len(idx)) - np.repeat(np.cumsum(n) - n, n))
        triples, start = triples[idx], year
        end = year
    rows = np.column_stack([triples, start]) if temporal else triples
    expanded = len(rows)
    _, first = np.unique(rows, axis=0, return_index=True)
    first.sort()  # keep the pooled order (so that the permutation alone decides the split)
    duplicates = expanded - len(first)
    rows = rows[first]
    order = np.random.default_rng(seed).permutation(len(rows))
    n_test, n_valid = round(test * len(rows)), round(valid * len(rows))
    parts = {
        "train": order[n_test + n_valid :],
        "valid": order[n_test : n_test + n_valid],
        "test": order[:n_test],
    }
    name = f"resplit(expand={expand}, valid={valid}, test={test}, seed={seed})"
    splits = {
        s: RawSplit(
            triples=np.ascontiguousarray(rows[ix, :3]),
            lines=np.arange(1, len(ix) + 1),
            path=f"{s} of {name}",
            start=np.ascontiguousarray(rows[ix, 3]) if temporal else None,
            end=np.ascontiguousarray(rows[ix, 3]) if temporal else None,
        )
        for s, ix in parts.items()
    }
    derivation: dict[str, Any] = {
        "protocol": name,
        "pooled_facts": int(pooled),
        "after_expansion": expanded,
        "duplicates_dropped": int(duplicates),
        "splits": {s: len(ix) for s, ix in parts.items()},
    }
    log.info(
        "%s: %s: %d facts pooled, %d after expansion, %d duplicates dropped; train %d, valid %d, test %d",
        raw.name,
        name,
        pooled,
        derivation["after_expansion"],
        duplicates,
        len(parts["train"]),
        len(parts["valid"]),
        len(parts["test"]),
    )
    return RawKG(
        name=raw.name,
        kind=raw.kind,
        entity_labels=list(raw.entity_labels),
        relation_labels=list(raw.relation_labels),
        splits=splits,
        quirks=raw.quirks.copy(),
        origin=raw.origin,
        source=f"{raw.source} {name}",
        derivation=derivation,
    )
