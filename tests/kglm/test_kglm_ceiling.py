"""benchmarks/kglm_ceiling.py: the points' mixes (sizes, shares, seeded), bad points, and the driver end to end on
the FB15k-237 subset with a tiny DistMult (every added fact is kept or wrong as stated, none evaluated)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner

from kgdistill.data import build_kg, read_static_names
from kgdistill.errors import ConfigError
from kgdistill.kglm.augment import hold_out, precision, propose_symmetric

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = str(FIXTURES / "fb15k237-mini")


@pytest.mark.parametrize(
    ("text", "want"), [("5000@0.5", (5000, 0.5)), ("all@1", (None, 1.0)), ("20@1.0", (20, 1.0))]
)
def test_points_parse(text: str, want: tuple[int | None, float]) -> None:
    from kglm_ceiling import parse_point

    assert parse_point(text) == want


def test_a_rule_point_has_no_set_precision() -> None:
    import math

    from kglm_ceiling import RULES, parse_point

    n, share = parse_point("symmetric")
    assert "symmetric" in RULES and n is None and math.isnan(share)


@pytest.mark.parametrize(
    "text", ["5000", "x@0.5", "symmetrical", "10@0", "10@1.5", "0@1", "all@", "@0.5"]
)
def test_bad_points_are_refused(text: str) -> None:
    from kglm_ceiling import parse_point

    with pytest.raises(ConfigError, match="--points"):
        parse_point(text)


def test_mix_draws_the_stated_shares(fb_mini) -> None:
    from kglm_ceiling import mix

    kept, held = hold_out(fb_mini, 0.2, seed=0)
    wrong = kept[:500]  # facts that are not held out
    truth = {tuple(f) for f in held.tolist()}
    facts, true = mix(held, wrong, 100, 0.3, seed=0)
    assert len(facts) == 100 and true == 30
    assert [tuple(f) in truth for f in facts.tolist()] == [True] * 30 + [False] * 70
    again, _ = mix(held, wrong, 100, 0.3, seed=0)
    assert torch.equal(facts, again)
    assert not torch.equal(facts, mix(held, wrong, 100, 0.3, seed=1)[0])
    every, true = mix(held, wrong, None, 0.5, seed=0)
    assert true == len(held) and len(every) == 2 * len(held)
    with pytest.raises(ConfigError, match="need"):
        mix(held, wrong, 10 * len(held), 1.0, seed=0)


@pytest.mark.slow
def test_the_driver_retrains_on_each_mix(
    tiny_rounds_spec: Callable[[Path | None], dict],
    tiny_encoder_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kglm_ceiling
    import kglm_rounds

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_rounds_spec(tiny_encoder_folder)))
    monkeypatch.setattr(kglm_rounds, "SPEC", path)  # the spec every kglm driver reads
    # the tiny encoder's probabilities stay low: keep every rule fact it scores (the threshold's own test below)
    monkeypatch.setattr(kglm_ceiling, "LM_THRESHOLD", 0.0)
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--datasets", DATA, "--seeds", "0", "--profile", "tiny", "--points", "40@0.5"]
    args += [
        "--points",
        "all@1",
        "--points",
        "symmetric",
        "--points",
        "symmetric+lm",
        "--points",
        "symmetric+kge",
        "--work",
        str(work),
        "--out",
        str(out),
        "-q",
    ]
    result = CliRunner().invoke(kglm_ceiling.main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "kglm_ceiling.json").read_text())
    assert (out / "kglm_ceiling.png").stat().st_size > 0
    kg = build_kg(read_static_names(FIXTURES / "fb15k237-mini"))
    kept, held = hold_out(kg, 0.2, seed=0)
    rule = propose_symmetric(kg, kept)
    held_n = str(doc["runs"][0]["held_out"])
    assert [r["point"] for r in doc["rows"]] == [
        "KGE alone",
        "40@0.5",
        "all@1",
        "symmetric (rule)",
        "symmetric, LM-verified",
        "symmetric, KGE's top (control)",
    ]
    assert [r["added facts"] for r in doc["rows"]][:4] == ["-", "40", held_n, str(len(rule))]
    assert [r["precision"] for r in doc["rows"]][:4] == [
        "-",
        "50%",
        "100%",
        f"{100 * precision(rule, held):.0f}%",
    ]
    seed = work / "fb15k237-mini" / "seed-0"
    label = lambda rows: {  # noqa: E731
        (kg.entity_labels[h], kg.relation_labels[r], kg.entity_labels[t]) for h, r, t in rows
    }
    held_labels, kept_labels = label(held.tolist()), label(kept.tolist())
    evaluated = label(torch.cat([kg.splits["valid"], kg.splits["test"]])[:, :3].tolist())

    def added(point: str) -> list[tuple[str, ...]]:
        lines = (seed / f"add-{point}" / "graph" / "train.txt").read_text().splitlines()
        return [tuple(x.split("\t")) for x in lines[len(kept) :]]

    half = added("40@0.5")
    assert len(half) == 40 and sum(f in held_labels for f in half) == 20
    assert not set(half) & (kept_labels | evaluated)
    assert set(added("all@1")) == held_labels
    assert set(added("symmetric")) == label(rule.tolist())
    assert not set(added("symmetric")) & (kept_labels | evaluated)
    # the verifier scores every rule fact (its relations are among the classifier's labels here) and, at
    # threshold 0, keeps them all; the control as many
    conf = json.loads((seed / "rule-confidence.json").read_text())
    assert conf["facts"] == rule.tolist() and len(conf["lm"]) == len(conf["kge"]) == len(rule)
    assert all(0 < c < 1 for c in conf["lm"]) and all(0 < c < 1 for c in conf["kge"])
    assert sorted(added("symmetric+lm")) == sorted(label(rule.tolist()))
    assert sorted(added("symmetric+kge")) == sorted(label(rule.tolist()))
    point = json.loads((seed / "add-symmetric+lm" / "point.json").read_text())
    assert point["candidates"] == point["scored"] == len(rule)
    verifier = doc["verifier"]
    assert sum(r["facts"] for r in verifier) == sum(r["kept"] for r in verifier) == len(rule)
    assert sum(r["true"] for r in verifier) == round(precision(rule, held) * len(rule))
    assert 0 <= point["verifier"]["test"]["accuracy"] <= 1
    # the ceiling's graph is the whole training split again
    every = (seed / "add-all@1" / "graph" / "train.txt").read_text().splitlines()
    assert len(every) == len(kg.splits["train"])
    # a second call reuses every run; --finished-only tabulates without training
    stamps = {p: p.stat().st_mtime for p in work.rglob("metrics.json")}
    assert len(stamps) == 6
    for extra in ([], ["--finished-only"]):
        again = CliRunner().invoke(kglm_ceiling.main, [*args, *extra])
        assert again.exit_code == 0, again.output
        assert stamps == {p: p.stat().st_mtime for p in stamps}
        assert json.loads((out / "kglm_ceiling.json").read_text())["rows"] == doc["rows"]
    # a call for one point (reused) keeps the other points of the result file beside it
    one = ["--datasets", DATA, "--seeds", "0", "--profile", "tiny", "--points", "symmetric"]
    one += ["--work", str(work), "--out", str(out), "-q"]
    before = json.loads((out / "kglm_ceiling.json").read_text())
    again = CliRunner().invoke(kglm_ceiling.main, one)
    assert again.exit_code == 0, again.output
    merged = json.loads((out / "kglm_ceiling.json").read_text())
    assert merged["rows"] == doc["rows"] and merged["earlier"][0]["command"] == before["command"]
    bad = CliRunner().invoke(kglm_ceiling.main, [*args, "--points", "7@2"])
    assert bad.exit_code == 2 and "--points '7@2'" in bad.output


def test_the_verifier_keeps_what_it_finds_likely_and_the_control_as_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``symmetric+lm``: the rule's facts with the language model's confidence >= LM_THRESHOLD (a relation
    outside its labels, None, never); ``symmetric+kge``: as many, the KGE's most confident; read from the
    seed's cached confidences (no model is trained when they are there)."""
    import kglm_ceiling
    from kglm_ceiling import LM_THRESHOLD, by_relation, verified

    rule = torch.tensor([[0, 1, 2], [2, 1, 0], [3, 1, 4], [4, 1, 3], [5, 2, 6], [6, 2, 5]])
    lm = [0.9, LM_THRESHOLD, 0.2, None, 0.7, 0.1]
    kge = [0.1, 0.2, 0.9, 0.8, 0.3, 0.05]
    ranks = [1, 2, 2, None, 1, 3]
    prior = [
        0.6,
        0.6,
        0.6,
        None,
        0.05,
        0.05,
    ]  # the relation's share of the classifier's training pairs
    cached = {
        "facts": rule.tolist(),
        "lm": lm,
        "lm_rank": ranks,
        "lm_prior": prior,
        "kge": kge,
        "lm_metrics": {"valid": {}, "test": {}},
    }
    (tmp_path / "rule-confidence.json").write_text(json.dumps(cached))
    cfg = None  # never read: the cache answers
    facts, extra = verified(cfg, tmp_path, tmp_path / "kge", rule, by="lm")  # type: ignore[arg-type]
    assert facts.tolist() == [[0, 1, 2], [2, 1, 0], [5, 2, 6]]
    assert extra["candidates"] == 6 and extra["scored"] == 5
    control, _ = verified(cfg, tmp_path, tmp_path / "kge", rule, by="kge")  # type: ignore[arg-type]
    assert control.tolist() == [[3, 1, 4], [4, 1, 3], [5, 2, 6]]
    # symmetric+lm-lift: the probability at least the relation's share (a rare relation's pairs pass at less)
    lift, _ = verified(cfg, tmp_path, tmp_path / "kge", rule, by="lm-lift")  # type: ignore[arg-type]
    assert lift.tolist() == [[0, 1, 2], [5, 2, 6], [6, 2, 5]]
    control3, _ = verified(cfg, tmp_path, tmp_path / "kge", rule, by="kge-lift")  # type: ignore[arg-type]
    assert control3.tolist() == [[3, 1, 4], [4, 1, 3], [5, 2, 6]]
    # what it kept, by relation, against the held-out facts
    # symmetric+lm-top2: the relation among the classifier's 2 most probable labels; its control as many
    top2, _ = verified(cfg, tmp_path, tmp_path / "kge", rule, by="lm-top2")  # type: ignore[arg-type]
    assert top2.tolist() == [[0, 1, 2], [2, 1, 0], [3, 1, 4], [5, 2, 6]]
    control2, _ = verified(cfg, tmp_path, tmp_path / "kge", rule, by="kge-top2")  # type: ignore[arg-type]
    assert control2.tolist() == [[2, 1, 0], [3, 1, 4], [4, 1, 3], [5, 2, 6]]
    # what it kept, by relation, against the held-out facts
    counts = by_relation(cached, rule[[0, 2]], ["r0", "r1", "r2"])
    assert counts == [
        {
            "relation": "r1",
            "facts": 4,
            "true": 2,
            "kept": 2,
            "kept true": 1,
            "kept top-2": 3,
            "kept top-2 true": 2,
            "kept lift": 1,
            "kept lift true": 1,
        },
        {
            "relation": "r2",
            "facts": 2,
            "true": 0,
            "kept": 1,
            "kept true": 0,
            "kept top-2": 1,
            "kept top-2 true": 0,
            "kept lift": 2,
            "kept lift true": 0,
        },
    ]
    # a cache written before the ranks were stored: counts without the top-2 columns, and not reused for a
    # selection (the confidences are computed again)
    older = {k: v for k, v in cached.items() if k not in ("lm_rank", "lm_prior")}
    assert set(by_relation(older, rule[[0, 2]], ["r0", "r1", "r2"])[0]) == {
        "relation",
        "facts",
        "true",
        "kept",
        "kept true",
    }
    (tmp_path / "rule-confidence.json").write_text(json.dumps(older))

    def recompute(*_: Any) -> None:
        raise RuntimeError("recomputed")

    monkeypatch.setattr(kglm_ceiling, "_prepare", recompute)
    with pytest.raises(RuntimeError, match="recomputed"):
        verified(cfg, tmp_path, tmp_path / "kge", rule, by="lm")  # type: ignore[arg-type]


def test_a_call_keeps_the_earlier_results_it_does_not_make(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The committed result file as the earlier one: a call that makes one point of one seed again keeps every
    other seed and point (its own point replacing the earlier one) and names the earlier call; an earlier point
    over another KGE alone, or a file of other settings, is not kept, with a warning."""
    import shutil

    from kglm_ceiling import merged_runs

    committed = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "kglm_ceiling.json"
    path = tmp_path / "kglm_ceiling.json"
    shutil.copy(committed, path)
    old = json.loads(committed.read_text())
    settings = {k: old[k] for k in ("profile", "hold_out", "settings")}
    prev = next(e for e in old["runs"] if (e["dataset"], e["seed"]) == ("wn18rr", 1))
    redone = {**prev["points"][0], "kge": {"valid_mrr": 0.5, "test": {"mrr": 0.5}}}
    now = {**prev, "points": [redone], "verifier": []}
    runs, earlier = merged_runs(path, [json.loads(json.dumps(now))], settings)
    assert [(e["dataset"], e["seed"]) for e in runs] == [
        (e["dataset"], e["seed"]) for e in old["runs"]
    ]
    mine = next(e for e in runs if (e["dataset"], e["seed"]) == ("wn18rr", 1))
    assert [q["point"] for q in mine["points"]] == [q["point"] for q in prev["points"]]
    assert mine["points"][0]["kge"]["test"]["mrr"] == 0.5  # this call's, not the earlier one
    assert mine["points"][1:] == prev["points"][1:] and mine["verifier"] == prev["verifier"]
    assert [e for e in runs if e is not mine] == [e for e in old["runs"] if e is not prev]
    last = {k: old[k] for k in ("command", "machine", "date", "points")}
    assert earlier == [*old.get("earlier", []), last]  # the calls before it stay named
    # another KGE alone: the earlier points of that seed go (their gains were over it)
    shifted = {**now, "base": {**prev["base"], "test": {**prev["base"]["test"], "mrr": 0.2}}}
    with caplog.at_level("WARNING"):
        runs, _ = merged_runs(path, [shifted], settings)
    mine = next(e for e in runs if (e["dataset"], e["seed"]) == ("wn18rr", 1))
    assert [q["point"] for q in mine["points"]] == [redone["point"]]
    assert "wn18rr seed 1: the KGE alone differs" in caplog.text
    # other settings, no file, a broken file: this call's entries only
    assert merged_runs(path, [now], {**settings, "profile": "gpu"}) == ([now], [])
    path.write_text("{")
    assert merged_runs(path, [now], settings) == ([now], [])
    path.unlink()
    assert merged_runs(path, [now], settings) == ([now], [])


def test_paired_rows_compare_the_selections_seed_by_seed() -> None:
    """The LM's selection minus the control's and the rule's on the same seed; a seed without both points of a
    pair is left out of that pair; a dataset without the points has no row."""
    from kglm_ceiling import paired_rows

    def entry(dataset: str, seed: int, **mrr: float) -> dict[str, Any]:
        points = [
            {"point": p.replace("_", "+"), "kge": {"test": {"mrr": v}}} for p, v in mrr.items()
        ]
        return {"dataset": dataset, "seed": seed, "points": points}

    entries = [
        entry("wn18rr", 0, symmetric_lm=0.36, symmetric_kge=0.35, symmetric=0.37),
        entry("wn18rr", 1, symmetric_lm=0.34, symmetric_kge=0.35, symmetric=0.36),
        entry("wn18rr", 2, symmetric_lm=0.40, symmetric=0.38),
        entry("fb15k237", 0, symmetric=0.27),
    ]
    rows = paired_rows(entries)
    assert [(r["dataset"], r["against"], r["seeds"], r["seeds ahead"]) for r in rows] == [
        ("wn18rr", "symmetric, KGE's top (control)", 2, 1),
        ("wn18rr", "symmetric (rule)", 3, 1),
    ]
    assert rows[0]["test MRR difference"] == "0.00 ± 1.41"  # +1 and -1 points
    assert rows[1]["test MRR difference"] == "-0.33 ± 2.08"  # -1, -2, +2


def test_verifier_rows_average_the_seeds_that_have_a_column() -> None:
    """A seed computed before a selection's field was stored has no column for it: the mean is over the seeds
    that have it, and a column no seed has is empty (None, '-' in the table)."""
    from kglm_ceiling import verifier_rows

    old = {"relation": "r1", "facts": 4, "true": 2, "kept": 2, "kept true": 1}
    new = {**old, "facts": 6, "kept top-2": 3, "kept top-2 true": 2}
    rows = verifier_rows(
        [{"dataset": "wn18rr", "verifier": [old]}, {"dataset": "wn18rr", "verifier": [new]}]
    )
    assert len(rows) == 1 and rows[0]["seeds"] == 2 and rows[0]["facts"] == 5
    assert rows[0]["kept top-2"] == 3 and rows[0]["kept lift"] is None
