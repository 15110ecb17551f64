"""Bidirectional distillation between KG embeddings and a language model (seed 002), both sides measured.

For each dataset (FB15k-237, WN18RR) and seed, with the profile's budget (``benchmarks/specs/kglm-rounds.yaml``), a
share of the training facts is held out on purpose (the ground truth of what LM -> KG adds), and the
alternating rounds of :mod:`kgdistill.kglm.rounds` run in four variants sharing round 0's KGE:

* ``lm-hard``: the (KGE-injected) language model scores the KGE's filtered top-k candidates; the most confident
  are added to the graph as facts; the KGE retrains;
* ``lm-soft``: the same facts as soft labels (the ``soft_labels`` term, weighted by the LM's confidence);
* ``kge-hard``: the KGE's own softmax picks the facts: self-training, the control without a language model;
* ``both-hard``: the product of the language model's and the KGE's probabilities picks them (a product of
  experts: a fact both find likely).

The language model's task is relation classification of an entity pair from the entities' texts (names and
descriptions), built from the held-out-free training facts; its test pairs each hold an entity never seen in
training (macro-F1 and accuracy). Its one-sided baselines on the same task: the plain PLM (``plm``) and the PLM
pulled towards the round-0 KGE by FitNet without injection (``plm+fitnet``).

Tables: the KG side (test MRR / Hits, mean +- std over seeds, each variant against the KGE alone = round 0),
the LM side (plain, FitNet, injected with round 0's and round 1's KGE), the precision of the added facts, and a
round-by-round table; a plot per round. Every run resumes; finished rounds are reused.

    python benchmarks/kglm_rounds.py --datasets fb15k237 --seeds 0 --seeds 1 --seeds 2

Writes ``benchmarks/results/kglm_rounds.{json,md,png}``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import yaml

from _common import (
    REPO,
    NothingFinished,
    driver_options,
    friendly_errors,
    markdown_table,
    setup_logging,
    write_script_result,
)
from kgdistill.errors import ConfigError
from kgdistill.kglm.rounds import RoundsConfig, lm_baseline, run_rounds

log = logging.getLogger("kglm")
SPEC = REPO / "benchmarks" / "specs" / "kglm-rounds.yaml"
VARIANTS = {
    "lm-hard": ("lm", "hard"),
    "lm-soft": ("lm", "soft"),
    "kge-hard": ("kge", "hard"),
    "both-hard": ("both", "hard"),
}
METRICS = ("mrr", "hits@1", "hits@10")


def _config(
    spec: dict[str, Any], profile: str, dataset: str, seed: int, root: str | None
) -> RoundsConfig:
    p = spec["profiles"][profile]
    return RoundsConfig(
        data=dataset,
        data_root=root,
        hold_out=float(spec["hold_out"]),
        kge=p["kge"],
        lm=p["lm"],
        k=int(p["k"]),
        max_queries=p["max_queries"],
        threshold=None,
        top=p["top"],
        soft_weight=float(p["soft_weight"]),
        max_rounds=int(p["max_rounds"]),
        seed=seed,
    )


def load_spec(profile: str, epochs: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec and its ``profile`` (the KGE's epochs set to ``epochs`` when given).

    Raises:
        ConfigError: the spec has no such profile.
    """
    spec = yaml.safe_load(SPEC.read_text())
    if profile not in spec["profiles"]:
        raise ConfigError(f"--profile '{profile}' is not one of {', '.join(spec['profiles'])}")
    p = spec["profiles"][profile]
    if epochs is not None:
        for st in p["kge"]["stages"]:
            st["epochs"] = epochs
    return spec, p


def _share_round_0(src: Path, dst: Path, whole: bool) -> None:
    """Round 0 of ``src`` into ``dst``: its KGE run (the same config on the same graph, which ``dst`` reads
    from its own copy), and the whole round when its selection is the same (``whole``)."""
    have = src / "round-0"
    if not (have / "round.json").is_file() or (dst / "round-0" / "round.json").is_file():
        return
    target = dst / "round-0"
    if whole:
        shutil.copytree(have, target, dirs_exist_ok=True)
    elif not (target / "kge" / "metrics.json").is_file():
        shutil.copytree(src / "graph-0", dst / "graph-0", dirs_exist_ok=True)
        shutil.copytree(have / "kge", target / "kge", dirs_exist_ok=True)
        stored = target / "kge" / "config.yaml"
        cfg = yaml.safe_load(stored.read_text())
        cfg["data"]["name"] = str(dst / "graph-0")
        stored.write_text(yaml.safe_dump(cfg, sort_keys=False))


def run_seed(cfg: RoundsConfig, work: Path, fitnet_weight: float) -> None:
    """Every variant and baseline of one dataset and seed under ``work``."""
    base = work / "lm-hard"
    run_rounds(cfg, base)
    lm_baseline(cfg, base)
    lm_baseline(
        cfg,
        base,
        kge_run=base / "round-0" / "kge",
        distill={"loss": "fitnet", "weight": fitnet_weight},
    )
    for name, (select_by, labels) in VARIANTS.items():
        if name == "lm-hard":
            continue
        _share_round_0(base, work / name, whole=select_by == "lm")
        run_rounds(replace(cfg, select_by=select_by, labels=labels), work / name)


# -- tables ---------------------------------------------------------------------------------------------------------
def _records(folder: Path) -> list[dict[str, Any]]:
    out = []
    for i in range(100):
        path = folder / f"round-{i}" / "round.json"
        if not path.is_file():
            break
        out.append(json.loads(path.read_text()))
    return out


def _baseline(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def collect(work: Path, datasets: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """One entry per dataset and seed with every finished variant's rounds and the LM baselines."""
    found = []
    for d in datasets:
        for s in seeds:
            folder = work / Path(d).name / f"seed-{s}"
            entry = {
                "dataset": Path(d).name,
                "seed": s,
                "variants": {v: _records(folder / v) for v in VARIANTS},
                "plm": _baseline(folder / "lm-hard", "lm-plain"),
                "plm+fitnet": _baseline(folder / "lm-hard", "lm-fitnet"),
            }
            if entry["variants"]["lm-hard"]:
                found.append(entry)
    return found


def _lm(record: dict[str, Any], split: str, metric: str) -> float:
    """The LM side of a round (NaN for the control's rounds, which train no language model)."""
    return record["lm"][split][metric] if record["lm"] else math.nan


def _stat(values: list[float], scale: float = 100.0) -> str:
    vals = [v * scale for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def _kge_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in dict.fromkeys(e["dataset"] for e in entries):
        group = [e for e in entries if e["dataset"] == d]
        alone = [e["variants"]["lm-hard"][0] for e in group]
        cells: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
            ("KGE alone (round 0)", alone, [])
        ]
        for v, title in (
            ("lm-hard", "+ LM-selected facts (hard)"),
            ("lm-soft", "+ LM-selected facts (soft labels)"),
            ("kge-hard", "+ KGE-selected facts (self-training control)"),
            ("both-hard", "+ facts selected by LM x KGE (hard)"),
        ):
            pairs = [
                (e["variants"][v][1], e["variants"][v][0])
                for e in group
                if len(e["variants"][v]) > 1
            ]
            cells.append((title, [p[0] for p in pairs], [p[1] for p in pairs]))
        for title, recs, origin in cells:
            if not recs:
                continue
            row = {"dataset": d, "model": title, "seeds": len(recs)}
            for m in METRICS:
                row[f"test {m}"] = _stat([r["kge"]["test"][m] for r in recs])
            gains = [
                r["kge"]["test"]["mrr"] - a["kge"]["test"]["mrr"]
                for r, a in zip(recs, origin or recs, strict=True)
            ]
            row["MRR gain"] = "-" if not origin else _stat(gains)
            added = [a["added"] for a in origin]
            row["facts added"] = "-" if not origin else str(round(statistics.mean(added)))
            row["precision"] = "-" if not origin else _stat([a["precision"] for a in origin])
            rows.append(row)
    return rows


def _lm_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in dict.fromkeys(e["dataset"] for e in entries):
        group = [e for e in entries if e["dataset"] == d]
        plain = [e["plm"] for e in group if e["plm"]]
        cases = [
            ("PLM alone", plain),
            (
                "PLM + FitNet to the KGE (no injection)",
                [e["plm+fitnet"] for e in group if e["plm+fitnet"]],
            ),
            ("PLM + injected KGE (round 0)", [e["variants"]["lm-hard"][0]["lm"] for e in group]),
            (
                "PLM + injected KGE (round 1, LM-augmented)",
                [
                    e["variants"]["lm-hard"][1]["lm"]
                    for e in group
                    if len(e["variants"]["lm-hard"]) > 1
                ],
            ),
        ]
        for title, results in cases:
            if not results:
                continue
            row = {"dataset": d, "model": title, "seeds": len(results)}
            for m in ("accuracy", "macro_f1"):
                row[f"test {m}"] = _stat([r["test"][m] for r in results])
            gains = (
                [
                    r["test"]["macro_f1"] - p["test"]["macro_f1"]
                    for r, p in zip(results, plain, strict=True)
                ]
                if len(results) == len(plain) and title != "PLM alone"
                else []
            )
            row["macro-F1 gain"] = _stat(gains) if gains else "-"
            rows.append(row)
    return rows


def _round_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for d in dict.fromkeys(e["dataset"] for e in entries):
        group = [e for e in entries if e["dataset"] == d]
        for v in VARIANTS:
            depth = max(len(e["variants"][v]) for e in group)
            for i in range(depth):
                recs = [e["variants"][v][i] for e in group if len(e["variants"][v]) > i]
                rows.append(
                    {
                        "dataset": d,
                        "variant": v,
                        "round": i,
                        "seeds": len(recs),
                        "graph facts": str(round(statistics.mean(r["graph_facts"] for r in recs))),
                        "KGE valid MRR": _stat([r["kge"]["valid_mrr"] for r in recs]),
                        "KGE test MRR": _stat([r["kge"]["test"]["mrr"] for r in recs]),
                        "LM valid acc": _stat([_lm(r, "valid", "accuracy") for r in recs]),
                        "LM test macro-F1": _stat([_lm(r, "test", "macro_f1") for r in recs]),
                        "added": str(round(statistics.mean(r["added"] for r in recs))),
                        "precision": _stat([r["precision"] for r in recs]),
                    }
                )
    return rows


def _plot(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(e["dataset"] for e in entries))
    fig, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 7), squeeze=False)
    for j, d in enumerate(datasets):
        group = [e for e in entries if e["dataset"] == d]
        for v in VARIANTS:
            depth = max(len(e["variants"][v]) for e in group)
            for row, (title, get) in enumerate(
                (
                    ("KGE test MRR", lambda r: r["kge"]["test"]["mrr"]),
                    ("LM test macro-F1", lambda r: _lm(r, "test", "macro_f1")),
                )
            ):
                xs, ys, es = [], [], []
                for i in range(depth):
                    vals = [get(e["variants"][v][i]) for e in group if len(e["variants"][v]) > i]
                    vals = [x for x in vals if not math.isnan(x)]
                    if not vals:
                        continue
                    xs.append(i)
                    ys.append(statistics.mean(vals))
                    es.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
                ax = axes[row][j]
                if not xs:
                    continue
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=v)
                ax.set_title(f"{d}: {title}")
                ax.set_xlabel("round")
                ax.set_xticks(range(max(depth, 1)))
        plain = [e["plm"]["test"]["macro_f1"] for e in group if e["plm"]]
        if plain:
            axes[1][j].axhline(
                statistics.mean(plain), color="grey", linestyle="--", label="PLM alone"
            )
    for ax in axes.flat:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _goals(kge_rows: list[dict[str, Any]], lm_rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in kge_rows:
        if row["MRR gain"] != "-":
            lines.append(
                f"- {row['dataset']}, {row['model']}: test MRR gain {row['MRR gain']} (points)"
            )
    for row in lm_rows:
        if row["macro-F1 gain"] != "-":
            lines.append(
                f"- {row['dataset']}, {row['model']}: test macro-F1 gain {row['macro-F1 gain']} (points)"
            )
    return lines


def _markdown(doc: dict[str, Any]) -> str:
    out = [
        "# KG <-> LM: both directions against their one-sided baselines",
        "",
        f"`{doc['command']}`",
        "",
        f"Machine: {doc['machine']['cpu']}, {doc['machine']['threads']} threads, "
        f"torch {doc['machine']['torch']}, CUDA {doc['machine']['cuda']}; {doc['date']}. "
        f"Profile `{doc['profile']}`; {doc['hold_out']:.0%} of the training facts held out on purpose.",
        "",
        "## LM -> KG: link prediction on the untouched test split (filtered, realistic ties; x100)",
        "",
        markdown_table(doc["kge"]),
        "",
        "## KG -> LM: relation classification of entity pairs, test pairs with an unseen entity (x100)",
        "",
        markdown_table(doc["lm"]),
        "",
        "## Round by round (mean ± std over seeds)",
        "",
        markdown_table(doc["rounds"]),
        "",
        "## Gains over the one-sided baselines (mean ± std over seeds, in points)",
        "",
        *doc["goals"],
        "",
        doc["notes"],
        "",
    ]
    return "\n".join(out)


NOTES = (
    "Precision: the share of the added facts that are held-out training facts (removed on purpose, so their "
    "truth is known); a candidate that is not held out may still be true (the graph is incomplete), so this is "
    "a lower bound. Nothing evaluated is ever proposed (every known fact of every split is filtered, and the "
    "writers check it again). The LM's task is built from the held-out-free training facts only."
)


@click.command()
@click.option("--datasets", multiple=True, default=("fb15k237", "wn18rr"), show_default=True)
@click.option("--seeds", multiple=True, type=int, default=(0,), show_default=True)
@click.option("--profile", default="cpu", show_default=True, help="A budget of the spec: cpu, gpu.")
@click.option("--encoder", default=None, help="A local encoder folder (default: packaged MiniLM).")
@driver_options(REPO / "benchmarks" / "work" / "kglm-rounds")
def main(
    datasets: tuple[str, ...],
    seeds: tuple[int, ...],
    profile: str,
    encoder: str | None,
    epochs: int | None,
    teacher_epochs: int | None,
    work: str,
    out: str,
    finished_only: bool,
    data_root: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Run (or finish) the KG <-> LM benchmark and write its tables and plot."""
    setup_logging(verbose, quiet)
    with friendly_errors():
        spec, p = load_spec(profile, epochs)
        if encoder:
            p["lm"]["encoder"] = encoder
        folder = Path(work)
        if not finished_only:
            for d in datasets:
                for s in seeds:
                    log.info("%s seed %d", d, s)
                    cfg = _config(spec, profile, d, s, data_root)
                    run_seed(cfg, folder / Path(d).name / f"seed-{s}", float(p["fitnet_weight"]))
        entries = collect(folder, list(datasets), list(seeds))
        if not entries:
            raise NothingFinished(f"no finished round under {folder}")
        kge_rows, lm_rows = _kge_rows(entries), _lm_rows(entries)
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        _plot(entries, out_dir / "kglm_rounds.png")
        text = write_script_result(
            out_dir,
            "kglm_rounds",
            "benchmarks/kglm_rounds.py",
            sys.argv[1:],
            {
                "profile": profile,
                "hold_out": float(spec["hold_out"]),
                "settings": p,
                "kge": kge_rows,
                "lm": lm_rows,
                "rounds": _round_rows(entries),
                "goals": _goals(kge_rows, lm_rows),
                "notes": NOTES,
                "runs": [
                    {k: e[k] for k in ("dataset", "seed")}
                    | {
                        "variants": {
                            v: [{k: r[k] for k in r if not k.endswith("_total")} for r in recs]
                            for v, recs in e["variants"].items()
                        },
                        "plm": e["plm"],
                        "plm+fitnet": e["plm+fitnet"],
                    }
                    for e in entries
                ],
            },
            _markdown,
        )
        click.echo(text)


if __name__ == "__main__":
    main()
