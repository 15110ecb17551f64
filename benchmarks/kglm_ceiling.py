"""What LM -> KG could gain, and the precision it needs: the KGE retrained on known mixes of true and wrong facts.

LM -> KG adds facts a selector (the language model, the KGE, their product) believes; how much that helps the
KGE depends on how many of them are true. This benchmark takes the selector out: on the same held-out split as
``benchmarks/kglm_rounds.py`` (same profile, dataset and seed: the same kept and held-out training facts and the
same round-0 KGE config), it adds ``N`` facts of which a share ``P`` are held-out training facts (true, drawn at
random) and the rest wrong candidates (the round-0 KGE's filtered top-k tails of the training queries that are not
held out: the plausible mistakes a selector makes), retrains the KGE and measures link prediction on the untouched
test split. ``all@1`` adds every held-out fact back: the ceiling of any LM -> KG method on this split.

A point is ``N@P`` (``5000@0.5``: 2,500 held-out facts and 2,500 wrong ones) or ``all@P`` (every held-out fact,
with wrong ones to precision ``P``). Beside these oracle mixes, ``symmetric`` adds what a rule finds without any
oracle, selector or language model: the missing reverse of each kept fact of a relation the kept graph shows
symmetric (:func:`kgdistill.kglm.augment.propose_symmetric`; its precision measured, not chosen). Two selections
among the rule's facts: ``symmetric+lm`` keeps those the language model of the rounds verifies (round 0's: the
relation classifier with the KGE injected, trained on the kept facts only; its probability of the fact's relation for
the pair at least ``LM_THRESHOLD``; a relation outside its labels is never kept), ``symmetric+kge`` the same number
of them, the KGE's most confident (the control: the same count without a language model). ``symmetric+lm-top2``
keeps the facts whose relation is among the classifier's ``LM_TOP`` most probable labels for the pair (a pair
holding two relations, co-nominees who are also co-winners, splits the softmax between them, so neither may reach
half of it), ``symmetric+kge-top2`` as many, the KGE's most confident; ``symmetric+lm-lift`` keeps the facts to
which the classifier gives at least ``LM_LIFT`` times the probability it gives the relation before reading any pair
(the relation's share of its training pairs: a rare relation is never the most probable), ``symmetric+kge-lift``
as many, the KGE's most confident. The confidences are
computed once per seed (``rule-confidence.json``). Each point's run is reused when finished; the result file
keeps what an earlier call wrote and this one does not make again (other seeds, datasets, points:
:func:`merged_runs`), so a call can add one point to the table.

    python benchmarks/kglm_ceiling.py --datasets fb15k237 --seeds 0 --seeds 1

Writes ``benchmarks/results/kglm_ceiling.{json,md,png}``.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import click
import torch

from _common import (
    REPO,
    NothingFinished,
    driver_options,
    friendly_errors,
    markdown_table,
    setup_logging,
    write_script_result,
)
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.data import load_kg
from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text
from kgdistill.kglm.augment import (
    hold_out,
    kge_confidence,
    lm_confidence_and_rank,
    precision,
    propose,
    propose_symmetric,
    selected_rows,
    write_static_graph,
)
from kgdistill.kglm.rounds import RoundsConfig, _kge, _lm_round, _prepare
from kgdistill.runs import finished
from kgdistill.types import LongTensor
from kglm_rounds import _config, load_spec

log = logging.getLogger("kglm_ceiling")
# points whose facts a rule proposes (no oracle): their precision is measured
TITLES = {
    "symmetric": "symmetric (rule)",
    "symmetric+lm": "symmetric, LM-verified",
    "symmetric+kge": "symmetric, KGE's top (control)",
    "symmetric+lm-top2": "symmetric, LM's top-2 relations",
    "symmetric+kge-top2": "symmetric, KGE's top (control of top-2)",
    "symmetric+lm-lift": "symmetric, LM above the relation's prior",
    "symmetric+kge-lift": "symmetric, KGE's top (control of prior)",
}
RULES = tuple(TITLES)
#: what a rule's fact needs of the verifier: its relation's probability (symmetric+lm), its relation's rank among
#: the labels (symmetric+lm-top2), its probability over the relation's share of the training pairs
#: (symmetric+lm-lift)
LM_THRESHOLD = 0.5
LM_TOP = 2
LM_LIFT = 1.0
POINTS = ("all@1", "1000@1", "5000@1", "5000@0.5", "5000@0.2", *RULES)
METRICS = ("mrr", "hits@1", "hits@10")


def parse_point(text: str) -> tuple[int | None, float]:
    """``"N@P"`` -> ``(N, P)``; ``"all@P"`` -> ``(None, P)`` (every held-out fact); a rule of ``RULES`` ->
    ``(None, NaN)`` (its precision is measured, not set).

    Raises:
        ConfigError: not of that form, ``N < 1`` or ``P`` outside ``(0, 1]``.
    """
    if text in RULES:
        return None, float("nan")
    count, sep, share = text.partition("@")
    try:
        n = None if count == "all" else int(count)
        p = float(share)
    except ValueError:
        n, p = -1, -1.0
    if not sep or (n is not None and n < 1) or not 0 < p <= 1:
        raise ConfigError(
            f"--points '{text}': expected N@P or all@P (N >= 1 facts, a precision P in (0, 1]) or one of "
            f"{', '.join(RULES)}"
        )
    return n, p


def mix(
    held: LongTensor, wrong: LongTensor, n: int | None, share: float, *, seed: int
) -> tuple[LongTensor, int]:
    """``n`` facts ``(n, 3)`` of which ``round(n * share)`` are drawn from ``held (M, 3)`` and the rest from
    ``wrong (W, 3)`` (``n`` None: all of ``held``, with wrong ones to that share); returns them and how many are
    held-out facts.

    Raises:
        ConfigError: ``held`` or ``wrong`` has too few facts for the point.
    """
    true = len(held) if n is None else round(n * share)
    total = round(true / share) if n is None else n
    false = total - true
    if true > len(held) or false > len(wrong):
        raise ConfigError(
            f"--points: {total} facts at precision {share} need {true} held-out and {false} wrong facts; "
            f"there are {len(held)} and {len(wrong)}"
        )
    g = torch.Generator().manual_seed(seed)
    picked = torch.cat(
        [
            held[torch.randperm(len(held), generator=g)[:true]],
            wrong[torch.randperm(len(wrong), generator=g)[:false]],
        ]
    )
    return picked, true


def wrong_pool(
    model: torch.nn.Module, kg: Any, kept: LongTensor, held: LongTensor, k: int
) -> LongTensor:
    """The KGE's filtered top-``k`` tails of every training query of ``kept`` that are not held-out facts
    ``(W, 3)``: wrong as far as the split knows (the graph is incomplete: some may be true)."""
    candidates = propose(model, kg, kept, k=k)
    truth = {tuple(f) for f in held.tolist()}
    keep = torch.tensor([tuple(f) not in truth for f in candidates.tolist()], dtype=torch.bool)
    return candidates[keep]


def rule_confidence(
    cfg: RoundsConfig, work: Path, base_run: Path, rule: LongTensor
) -> dict[str, Any]:
    """The round-0 language model's and KGE's confidence in each of the rule's facts ``rule (C, 3)``: the
    relation classifier of the rounds with the KGE of ``base_run`` injected, trained on the kept facts only
    (:mod:`kgdistill.kglm.rounds`' round 0: its probability of the fact's relation, that relation's rank among its
    labels and its share of the classifier's training pairs), and the KGE's softmax. Cached in
    ``work/rule-confidence.json`` (recomputed when the rule's facts differ or a field is missing)."""
    path = work / "rule-confidence.json"
    if path.is_file():
        doc = json.loads(path.read_text())
        if doc["facts"] == rule.tolist() and "lm_rank" in doc and "lm_prior" in doc:
            return doc  # type: ignore[no-any-return]
    _, _, _, _, reduced, task = _prepare(cfg, work)
    model, lm_metrics = _lm_round(cfg, reduced, task, base_run)
    kge = load_model(load_checkpoint(base_run / "best.safetensors"))
    lm, rank = lm_confidence_and_rank(model, task.relations, rule)
    # the share of each label among the classifier's training pairs: the probability it gives a relation before
    # it reads the pair
    train = task.labels["train"]
    share = torch.bincount(train, minlength=task.num_labels).double() / len(train)
    label = {r: i for i, r in enumerate(task.relations)}
    doc = {
        "facts": rule.tolist(),
        "lm": [None if math.isnan(c) else c for c in lm.tolist()],
        "lm_rank": [None if math.isnan(c) else int(c) for c in rank.tolist()],
        "lm_prior": [float(share[label[r]]) if r in label else None for r in rule[:, 1].tolist()],
        "kge": kge_confidence(kge, rule).tolist(),
        "lm_metrics": {k: lm_metrics[k] for k in ("valid", "test")},
    }
    atomic_write_text(path, json.dumps(doc) + "\n")
    return doc


def _values(doc: dict[str, Any], key: str) -> torch.Tensor:
    """A per-fact field of a ``rule-confidence.json`` as floats ``(C,)``, NaN for None."""
    return torch.tensor([math.nan if c is None else c for c in doc[key]], dtype=torch.double)


def lm_kept(doc: dict[str, Any], how: str) -> torch.Tensor | None:
    """Which of the rule's facts the verifier keeps ``(C,)`` (bool; never one whose relation is outside its
    labels): ``how`` "lm", confidence >= ``LM_THRESHOLD``; "lm-top2", the relation among its ``LM_TOP`` most
    probable labels; "lm-lift", confidence >= ``LM_LIFT`` x the relation's share of its training pairs. None when
    the file predates the field that selection reads."""
    lm = _values(doc, "lm")
    if how == "lm":
        return lm >= LM_THRESHOLD
    field = {"lm-top2": "lm_rank", "lm-lift": "lm_prior"}[how]
    if field not in doc:
        return None
    if how == "lm-top2":
        return _values(doc, field) <= LM_TOP
    return lm / _values(doc, field) >= LM_LIFT


def verified(
    cfg: RoundsConfig, work: Path, base_run: Path, rule: LongTensor, by: str
) -> tuple[LongTensor, dict[str, Any]]:
    """The rule's facts the language model keeps (``by`` "lm": confidence >= ``LM_THRESHOLD``; "lm-top2": the
    fact's relation among its ``LM_TOP`` most probable labels; "lm-lift": its confidence at least ``LM_LIFT``
    times the relation's share of the classifier's training pairs), or as many of them, the KGE's most confident
    (``by`` "kge", "kge-top2", "kge-lift"); with what the point records of the selection."""
    doc = rule_confidence(cfg, work, base_run, rule)
    kept = lm_kept(doc, "lm" + by.removeprefix("lm").removeprefix("kge"))
    assert kept is not None  # rule_confidence computes every field
    keep = kept.nonzero()[:, 0]
    if by.startswith("kge"):
        keep = selected_rows(torch.tensor(doc["kge"]), threshold=None, top=len(keep))
    extra = {
        "candidates": len(rule),
        "scored": sum(c is not None for c in doc["lm"]),
        "verifier": doc["lm_metrics"],
    }
    return rule[keep.sort().values], extra


def run_seed(
    cfg: RoundsConfig, points: list[str], work: Path, train: bool = True
) -> dict[str, Any]:
    """The KGE alone and one KGE per point for one dataset and seed under ``work`` (finished runs reused);
    with ``train`` false, the finished runs only."""
    work.mkdir(parents=True, exist_ok=True)
    base_run = work / "base" / "kge"
    entry: dict[str, Any] = {"dataset": Path(cfg.data).name, "seed": cfg.seed, "points": []}
    if not train and not finished(base_run):
        return entry
    kg = load_kg(cfg.data, root=cfg.data_root)
    kept, held = hold_out(kg, cfg.hold_out, seed=cfg.seed)
    entry["held_out"] = len(held)
    graph = work / "graph-0"
    if train:
        write_static_graph(graph, kg, kept)
    entry["base"] = _metrics(_kge(cfg, graph, base_run) if train else _read(base_run))
    wrong = None
    for text in points:
        folder = work / f"add-{text}"
        done = folder / "point.json"
        if done.is_file():
            entry["points"].append(json.loads(done.read_text()))
            continue
        if not train:
            continue
        n, share = parse_point(text)
        extra: dict[str, Any] = {}
        if text in RULES:
            added = propose_symmetric(kg, kept)
            if text != "symmetric":
                added, extra = verified(cfg, work, base_run, added, by=text.split("+")[1])
            true = round(precision(added, held) * len(added)) if len(added) else 0
        else:
            if wrong is None:
                model = load_model(load_checkpoint(base_run / "best.safetensors"))
                wrong = wrong_pool(model, kg, kept, held, cfg.k)
                log.info("%d wrong candidates from the KGE's top-%d", len(wrong), cfg.k)
            added, true = mix(held, wrong, n, share, seed=cfg.seed)
        write_static_graph(folder / "graph", kg, kept, added)
        record = {
            "point": text,
            "added": len(added),
            "true": true,
            "precision": true / len(added) if len(added) else float("nan"),
            **extra,
            "kge": _metrics(_kge(cfg, folder / "graph", folder / "kge")),
        }
        atomic_write_text(done, json.dumps(record, indent=2) + "\n")
        entry["points"].append(record)
    conf = work / "rule-confidence.json"
    if conf.is_file():
        entry["verifier"] = by_relation(json.loads(conf.read_text()), held, kg.relation_labels)
    return entry


#: the verifier table's selections: column -> :func:`lm_kept`'s ``how``
SELECTIONS = {"kept": "lm", "kept top-2": "lm-top2", "kept lift": "lm-lift"}
#: the verifier table's counts per relation: the rule's facts, the true ones, and a pair per selection
VERIFIER_COUNTS = ("facts", "true", *(k for name in SELECTIONS for k in (name, f"{name} true")))


def by_relation(
    doc: dict[str, Any], held: LongTensor, relation_labels: list[str]
) -> list[dict[str, Any]]:
    """What the verifier kept of the rule's facts, per relation: the rule's facts, how many of them are
    held-out facts, and for each selection of :data:`SELECTIONS` the file has the fields of, how many it keeps
    and how many of those are held-out facts; from a seed's ``rule-confidence.json``."""
    truth = {tuple(f) for f in held.tolist()}
    masks = {name: lm_kept(doc, how) for name, how in SELECTIONS.items()}
    have = {name: m.tolist() for name, m in masks.items() if m is not None}
    out: dict[int, dict[str, Any]] = {}
    for i, fact in enumerate(doc["facts"]):
        r = fact[1]
        row = out.setdefault(
            r,
            {
                "relation": relation_labels[r],
                "facts": 0,
                "true": 0,
                **{k: 0 for name in have for k in (name, f"{name} true")},
            },
        )
        true = tuple(fact) in truth
        row["facts"] += 1
        row["true"] += true
        for name, kept in have.items():
            row[name] += kept[i]
            row[f"{name} true"] += kept[i] and true
    return [out[r] for r in sorted(out)]


def verifier_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset and relation, :func:`by_relation`'s counts averaged over the seeds that have them."""
    rows = []
    for d in dict.fromkeys(e["dataset"] for e in entries):
        group = [e["verifier"] for e in entries if e["dataset"] == d and e.get("verifier")]
        names = dict.fromkeys(r["relation"] for g in group for r in g)
        for name in names:
            counts = [r for g in group for r in g if r["relation"] == name]
            row: dict[str, Any] = {"dataset": d, "relation": name, "seeds": len(counts)}
            for key in VERIFIER_COUNTS:
                have = [c[key] for c in counts if key in c]
                row[key] = round(statistics.mean(have)) if have else None
            rows.append(row)
    return rows


def merged_runs(
    path: Path, entries: list[dict[str, Any]], settings: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """This call's ``entries`` with what the earlier result file ``path`` holds beyond them, and the earlier
    calls whose results stay beside (command, machine, date, and the points of the earlier table in its order).

    Kept: every earlier (dataset, seed) this call did not make; within one it made, the earlier points it did
    not make again (and the earlier verifier table when this call has none). An earlier file made under other
    settings (profile, held-out share, KGE config: ``settings``) keeps nothing; earlier points whose KGE alone
    differs from this call's by more than 0.05 MRR points (another base run) are dropped, with a warning:
    their gains were measured against it.
    """
    try:
        old = json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON; its results are not kept", path)
        old = None
    if not isinstance(old, dict) or not isinstance(old.get("runs"), list):
        return entries, []
    if any(old.get(k) != v for k, v in settings.items()):
        log.warning(
            "%s was made under other settings (profile, held-out share or KGE); not kept", path
        )
        return entries, []
    made = {(e["dataset"], e["seed"]): e for e in entries}
    runs, kept = [], False
    for prev in old["runs"]:
        key = (prev.get("dataset"), prev.get("seed"))
        now = made.pop(key, None)
        if now is None:
            runs.append(prev)
            kept = True
            continue
        names = {p["point"] for p in now["points"]}
        extra = [p for p in prev.get("points", []) if p["point"] not in names]
        shift = abs(now["base"]["test"]["mrr"] - prev["base"]["test"]["mrr"])
        if extra and shift > 5e-4:
            log.warning(
                "%s seed %s: the KGE alone differs from the earlier file's by %.2f MRR points; its earlier "
                "points %s are dropped (their gains were over that KGE)",
                *key,
                100 * shift,
                [p["point"] for p in extra],
            )
            extra = []
        merged = {**now, "points": [*now["points"], *extra]}
        old_verifier = not now.get("verifier") and bool(prev.get("verifier"))
        if old_verifier:
            merged["verifier"] = prev["verifier"]
        kept = kept or bool(extra) or old_verifier
        runs.append(merged)
    runs.extend(made.values())  # new (dataset, seed) pairs
    earlier = []
    if kept:
        last = {k: old[k] for k in ("command", "machine", "date", "points") if k in old}
        earlier = [*old.get("earlier", []), last]
    return runs, earlier


def _read(run: Path) -> dict[str, Any]:
    return json.loads((run / "metrics.json").read_text())  # type: ignore[no-any-return]


def _metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"valid_mrr": metrics["best_valid_mrr"], "test": metrics["sides"]["both"]}


def _stat(values: list[float], scale: float = 100.0) -> str:
    vals = [v * scale for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def table(entries: list[dict[str, Any]], points: list[str]) -> list[dict[str, Any]]:
    """Per dataset: the KGE alone, then each point with its paired MRR gain (mean ± std over seeds)."""
    rows = []
    for d in dict.fromkeys(e["dataset"] for e in entries):
        group = [e for e in entries if e["dataset"] == d and "base" in e]
        row = {
            "dataset": d,
            "point": "KGE alone",
            "added facts": "-",
            "of them held out": "-",
            "precision": "-",
            "seeds": len(group),
        }
        for m in METRICS:
            row[f"test {m}"] = _stat([e["base"]["test"][m] for e in group])
        row["MRR gain"] = "-"
        rows.append(row)
        for text in points:
            pairs = [(p, e["base"]) for e in group for p in e["points"] if p["point"] == text]
            if not pairs:
                continue
            row = {
                "dataset": d,
                "point": TITLES.get(text, text),
                "added facts": str(round(statistics.mean(p["added"] for p, _ in pairs))),
                "of them held out": str(round(statistics.mean(p["true"] for p, _ in pairs))),
                "precision": f"{100 * statistics.mean(p['precision'] for p, _ in pairs):.0f}%",
                "seeds": len(pairs),
            }
            for m in METRICS:
                row[f"test {m}"] = _stat([p["kge"]["test"][m] for p, _ in pairs])
            row["MRR gain"] = _stat([p["kge"]["test"]["mrr"] - b["test"]["mrr"] for p, b in pairs])
            rows.append(row)
    return rows


#: the selections compared seed by seed: (point, against)
PAIRED = (
    ("symmetric+lm", "symmetric+kge"),
    ("symmetric+lm", "symmetric"),
    ("symmetric+lm-top2", "symmetric+kge-top2"),
    ("symmetric+lm-top2", "symmetric"),
    ("symmetric+lm-lift", "symmetric+kge-lift"),
    ("symmetric+lm-lift", "symmetric"),
)


def paired_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset, each pair of :data:`PAIRED` both measured on one or more seeds: the test MRR difference of the
    point over the other on the same seed (mean ± std, x100) and on how many seeds the point is ahead."""
    rows = []
    for d in dict.fromkeys(e["dataset"] for e in entries):
        for a, b in PAIRED:
            diffs = []
            for e in entries:
                got = {p["point"]: p["kge"]["test"]["mrr"] for p in e["points"]}
                if e["dataset"] == d and a in got and b in got:
                    diffs.append(got[a] - got[b])
            if diffs:
                rows.append(
                    {
                        "dataset": d,
                        "point": TITLES[a],
                        "against": TITLES[b],
                        "seeds": len(diffs),
                        "test MRR difference": _stat(diffs),
                        "seeds ahead": sum(x > 0 for x in diffs),
                    }
                )
    return rows


def _plot(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(e["dataset"] for e in entries))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        by_share: dict[float, list[tuple[int, float]]] = {}
        rules: dict[str, list[tuple[int, float]]] = {}
        for e in entries:
            if e["dataset"] != d or "base" not in e:
                continue
            for p in e["points"]:
                gain = 100 * (p["kge"]["test"]["mrr"] - e["base"]["test"]["mrr"])
                if p["point"] in RULES:
                    rules.setdefault(p["point"], []).append((p["true"], gain))
                else:
                    by_share.setdefault(round(p["precision"], 2), []).append((p["true"], gain))
        for share, pts in sorted(by_share.items(), reverse=True):
            xs, ys = zip(*sorted(pts), strict=True)
            ax.plot(xs, ys, "o", label=f"precision {100 * share:.0f}%")
        for name, pts in rules.items():
            xs, ys = zip(*sorted(pts), strict=True)
            ax.plot(xs, ys, "x", markersize=8, label=f"{TITLES[name]}, no oracle")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{d}: MRR gain over the KGE alone")
        ax.set_xlabel("held-out (true) facts added")
        ax.set_ylabel("test MRR gain (points)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _section(title: str, intro: str | None, rows: list[dict[str, Any]] | None) -> list[str]:
    """The lines of a Markdown section holding a table; none without rows."""
    if not rows:
        return []
    return [f"## {title}", "", *([intro, ""] if intro else []), markdown_table(rows), ""]


def _markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    return "\n".join(
        [
            "# LM -> KG: the gain of known mixes of true and wrong facts (the selector taken out)",
            "",
            f"`{doc['command']}`",
            "",
            *(
                [
                    "Rows kept from earlier calls (the same profile and settings): "
                    + "; ".join(
                        f"`{e['command']}` ({e.get('machine', {}).get('threads', '?')} threads, {e.get('date')})"
                        for e in doc["earlier"]
                    ),
                    "",
                ]
                if doc.get("earlier")
                else []
            ),
            f"Machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}; {doc['date']}. Profile "
            f"`{doc['profile']}` of `benchmarks/specs/kglm-rounds.yaml` (the KGE of `kglm_rounds.py`'s rounds); "
            f"{doc['hold_out']:.0%} of the training facts held out on purpose.",
            "",
            "Each row adds `added facts` to the kept training facts, `of them held out` true ones (held-out "
            "training facts drawn at random) and the rest wrong ones (the round-0 KGE's filtered top-k tails of "
            "the training queries that are not held out), retrains the KGE and evaluates it on the untouched "
            "test split (filtered, realistic ties; x100; mean ± std over seeds; the gain is paired per seed). "
            "Precision 100% with every held-out fact is the ceiling of any LM -> KG method on this split. "
            "The `symmetric` row is no oracle mix: a rule adds the missing reverse `(t, r, h)` of every kept fact "
            "of a relation that the kept graph shows symmetric (at least half of its facts have their reverse), "
            "never a valid or test fact; its precision is what the rule got right. `symmetric, LM-verified` keeps "
            "the rule's facts to which the rounds' round-0 language model (the relation classifier with the KGE "
            "injected, trained on the kept facts only) gives their relation a probability of at least "
            f"{LM_THRESHOLD}; `symmetric, KGE's top (control)` keeps as many, the KGE's most confident. "
            f"`symmetric, LM's top-2 relations` keeps the facts whose relation is among the classifier's {LM_TOP} "
            "most probable labels for the pair (a pair holding two relations splits the probability between "
            "them); `symmetric, LM above the relation's prior` keeps those to which it gives at least "
            f"{LM_LIFT} times the relation's share of its training pairs (a rare relation is never the most "
            "probable); each control keeps as many, the KGE's most confident.",
            "",
            markdown_table(doc["rows"]),
            "",
            *_section(
                "Paired on each seed: the language model's selection against the others",
                None,
                doc.get("paired"),
            ),
            *_section(
                "The verifier's choices among the rule's facts, by relation (mean over seeds)",
                "`facts`: the rule's facts of the relation; `true`: of them held-out facts; `kept`: those the "
                f"language model gives a probability of at least {LM_THRESHOLD}; `kept true`: of them "
                f"held-out facts; `kept top-2` / `kept top-2 true`: the same for the relation among its "
                f"{LM_TOP} most probable labels; `kept lift` / `kept lift true`: for a probability at least "
                f"{LM_LIFT} times the relation's share of the training pairs (- for seeds computed before "
                "those were stored).",
                doc.get("verifier"),
            ),
        ]
    )


@click.command()
@click.option("--datasets", multiple=True, default=("fb15k237",), show_default=True)
@click.option("--seeds", multiple=True, type=int, default=(0,), show_default=True)
@click.option(
    "--points",
    multiple=True,
    default=POINTS,
    show_default=True,
    help="N@P: N facts added, a share P of them held-out facts; all@P: every held-out fact; symmetric: the "
    "graph's own symmetry rule, no oracle; symmetric+lm / symmetric+kge: the rule's facts the language model "
    "verifies / as many, the KGE's most confident; symmetric+lm-top2 / symmetric+kge-top2: the rule's facts whose "
    "relation is among the language model's 2 most probable / as many, the KGE's; symmetric+lm-lift / "
    "symmetric+kge-lift: the rule's facts the language model finds likelier than the relation's prior / as many, "
    "the KGE's (repeatable).",
)
@click.option("--profile", default="cpu", show_default=True, help="A budget of the spec: cpu, gpu.")
@driver_options(REPO / "benchmarks" / "work" / "kglm-ceiling")
def main(
    datasets: tuple[str, ...],
    seeds: tuple[int, ...],
    points: tuple[str, ...],
    profile: str,
    epochs: int | None,
    teacher_epochs: int | None,
    work: str,
    out: str,
    finished_only: bool,
    data_root: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Retrain the KGE on each point's mix and write the gain table and plot."""
    setup_logging(verbose, quiet)
    with friendly_errors():
        for text in points:
            parse_point(text)
        spec, p = load_spec(profile, epochs)
        entries = []
        for d in datasets:
            for s in seeds:
                log.info("%s seed %d", d, s)
                cfg = _config(spec, profile, d, s, data_root)
                folder = Path(work) / Path(d).name / f"seed-{s}"
                entries.append(run_seed(cfg, list(points), folder, train=not finished_only))
        entries = [e for e in entries if "base" in e]
        if not entries:
            raise NothingFinished(f"no finished KGE under {work}")
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        settings = {"profile": profile, "hold_out": float(spec["hold_out"]), "settings": p["kge"]}
        entries, earlier = merged_runs(out_dir / "kglm_ceiling.json", entries, settings)
        # the table's points: the earlier file's in its order, then this call's new ones
        order = [*(earlier[-1].get("points", []) if earlier else []), *points]
        order += [q["point"] for e in entries for q in e["points"]]
        shown = [
            q
            for q in dict.fromkeys(order)
            if any(x["point"] == q for e in entries for x in e["points"])
        ]
        _plot(entries, out_dir / "kglm_ceiling.png")
        text = write_script_result(
            out_dir,
            "kglm_ceiling",
            "benchmarks/kglm_ceiling.py",
            sys.argv[1:],
            {
                **settings,
                "points": shown,
                "rows": table(entries, shown),
                "paired": paired_rows(entries),
                "verifier": verifier_rows(entries),
                "runs": entries,
                "earlier": earlier,
            },
            _markdown,
        )
        click.echo(text)


if __name__ == "__main__":
    main()
