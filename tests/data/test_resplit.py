"""The yearly-expansion random-split protocol (``data.resplit``) on the YAGO11k and WN18RR fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kgdistill.config import parse_config
from kgdistill.data.datasets import load_kg, read_raw
from kgdistill.data.resplit import resplit
from kgdistill.data.time import UNKNOWN
from kgdistill.errors import ConfigError
from kgdistill.run import load_data

FIXTURES = Path(__file__).parents[1] / "fixtures"
YAGO = FIXTURES / "yago11k-mini"


def _rows(sp) -> set[tuple[int, ...]]:
    return {(*map(int, t), int(y)) for t, y in zip(sp.triples, sp.start, strict=True)}


def test_intervals_become_one_fact_per_year_dealt_at_random() -> None:
    raw = read_raw(YAGO)
    before = {s: len(sp) for s, sp in raw.splits.items()}
    out = resplit(raw, expand="year", valid=0.1, test=0.2, seed=3)
    # the expected yearly facts, counted from the pooled originals
    expected: set[tuple[int, ...]] = set()
    for sp in raw.splits.values():
        for t, a, b in zip(sp.triples, sp.start, sp.end, strict=True):
            lo = a if a != UNKNOWN else b
            hi = b if (a != UNKNOWN and b != UNKNOWN) else lo
            expected |= {(*map(int, t), int(y)) for y in range(int(lo), int(hi) + 1)}
    parts = {s: _rows(sp) for s, sp in out.splits.items()}
    assert set().union(*parts.values()) == expected
    assert sum(len(p) for p in parts.values()) == len(expected)  # disjoint, no duplicates
    n = len(expected)
    assert len(parts["test"]) == round(0.2 * n) and len(parts["valid"]) == round(0.1 * n)
    assert n > sum(before.values())  # multi-year intervals were expanded
    for sp in out.splits.values():
        assert np.array_equal(sp.start, sp.end)  # every new fact is a point in time
    assert out.derivation is not None and out.derivation["splits"]["test"] == len(parts["test"])
    assert {s: len(sp) for s, sp in raw.splits.items()} == before  # the input is untouched
    again = resplit(raw, expand="year", valid=0.1, test=0.2, seed=3)
    other = resplit(raw, expand="year", valid=0.1, test=0.2, seed=4)
    assert _rows(again.splits["test"]) == parts["test"] != _rows(other.splits["test"])


def test_expand_none_keeps_facts_and_a_run_config_builds_the_kg() -> None:
    raw = read_raw(YAGO)
    out = resplit(raw, expand="none", valid=0.1, test=0.1, seed=0)
    assert sum(len(sp) for sp in out.splits.values()) == out.derivation["after_expansion"]  # type: ignore[index]
    assert out.derivation["after_expansion"] <= sum(len(sp) for sp in raw.splits.values())  # type: ignore[index]
    cfg = parse_config(
        {
            "name": "r",
            "data": {
                "name": str(YAGO),
                "time": {"granularity": "year"},
                "resplit": {"expand": "year", "test": 0.15},
            },
            "model": {"name": "ttranse", "dim": 4},
            "stages": [{"epochs": 1, "objective": [{"loss": "supervised_ce"}]}],
        }
    )
    kg = load_data(cfg)
    d = kg.report["derivation"]
    assert d["protocol"] == "resplit(expand=year, valid=0.1, test=0.15, seed=0)"
    assert len(kg.facts["test"]) == d["splits"]["test"]
    assert cfg.data.protocol()["resplit"]["test"] == 0.15
    # the standard protocol records no resplit key (run folders written before the option stay reusable)
    assert (
        "resplit"
        not in parse_config({**cfg.model_dump(), "data": {"name": str(YAGO)}}).data.protocol()
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"resplit": {"test": 0.0}}, r"data\.resplit\.test"),
        ({"resplit": {"expand": "month"}}, r"data\.resplit\.expand"),
        ({"resplit": {"seed": "x"}}, r"data\.resplit\.seed"),
        ({"resplit": {}, "multi": {}}, "resplit and multi do not combine"),
    ],
)
def test_wrong_resplit_keys_are_named(data: dict, match: str) -> None:
    raw = {
        "name": "r",
        "data": {"name": str(YAGO), **data},
        "model": {"name": "ttranse", "dim": 4},
        "stages": [{"epochs": 1, "objective": [{"loss": "supervised_ce"}]}],
    }
    with pytest.raises(ConfigError, match=match):
        parse_config(raw)


def test_yearly_expansion_of_a_static_graph_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'year' needs interval times; .* has no times"):
        load_kg(FIXTURES / "wn18rr-mini", resplit={"expand": "year"})
    kg = load_kg(FIXTURES / "wn18rr-mini", resplit={"expand": "none", "valid": 0.2, "test": 0.2})
    assert kg.report["derivation"]["splits"]["valid"] == len(kg.facts["valid"])
    with pytest.raises(ConfigError, match="valid > 0"):
        resplit(read_raw(FIXTURES / "wn18rr-mini"), expand="none", valid=0.6, test=0.5)
