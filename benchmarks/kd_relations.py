"""Where do the distilled students win and lose? The KD benchmark's runs, broken down by relation.

For every finished run of ``benchmarks/temporal_kd.py`` under ``--work/<dataset>`` (the teacher and, for each
student of ``--students`` and method of ``--methods``, its run of the lowest seed that finished), this script
ranks the test split under the run's own protocol (``kgdistill evaluate RUN --by-relation``) and reports, per
relation category (1-1, 1-N, N-1, N-N; Bordes et al. 2013) and per relation, each model's MRR and Hits@1 in
percent. Next to each relation it gives its category, its mean tails per (head, relation) and heads per
(relation, tail), and its ``reverse share``: the fraction of its facts ``(h, r, t)`` whose reverse ``(t, r, h)``
is also a fact of the graph (1 for a symmetric relation, 0 for an antisymmetric one), the property a DistMult
student cannot tell apart. Writes ``kd_relations.json`` and
``kd_relations.md`` in ``--out``.

    python benchmarks/kd_relations.py --work benchmarks/work/static-kd-cpu --datasets wn18rr
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from _common import dataset_folders, friendly_errors, markdown_table, write_script_result
from kgdistill.api import evaluate_run, load_data
from kgdistill.config import load_config
from kgdistill.data import KG
from kgdistill.runs import finished


def reverse_share(kg: KG) -> dict[str, float]:
    """Relation label -> the fraction of its distinct facts ``(h, r, t)`` (all splits) whose ``(t, r, h)`` is
    also a fact; relations without facts are left out."""
    facts = torch.unique(torch.cat([f[:, :3] for f in kg.facts.values()]), dim=0)
    known = set(map(tuple, facts.tolist()))
    hits: dict[int, list[int]] = {}
    for h, r, t in facts.tolist():
        hits.setdefault(r, [0, 0])
        hits[r][0] += (t, r, h) in known
        hits[r][1] += 1
    return {kg.relation_labels[r]: k / n for r, (k, n) in sorted(hits.items())}


def _runs(ds_dir: Path, students: list[str], methods: list[str]) -> list[Path]:
    """The finished teacher, then per student and method in the order asked the finished
    ``<student>-<method>-s<seed>`` run of the lowest seed."""
    runs = [ds_dir / "teacher"] if finished(ds_dir / "teacher") else []
    for cell in (f"{s}-{m}" for s in students for m in methods):
        seeds = sorted(
            (int(p.name.rsplit("-s", 1)[1]), p)
            for p in ds_dir.glob(f"{cell}-s*")
            if p.name.rsplit("-s", 1)[1].isdigit() and finished(p)
        )
        runs += [seeds[0][1]] if seeds else []
    return runs


def measure_dataset(ds_dir: Path, students: list[str], methods: list[str]) -> dict[str, Any] | None:
    """``{"dataset", "runs", "categories", "relations"}`` of one dataset folder, ``None`` when nothing finished:
    ``categories`` / ``relations`` map a name to its descriptive fields and ``{run: {"mrr", "hits@1"}}``."""
    runs = _runs(ds_dir, students, methods)
    if not runs:
        return None
    cfg, _ = load_config(runs[0] / "config.yaml")
    share = reverse_share(load_data(cfg))
    cats: dict[str, Any] = {}
    rels: dict[str, Any] = {}
    for run in runs:
        metrics = evaluate_run(run / "best.safetensors", progress=False, by_relation=True)
        assert metrics.breakdown is not None
        for table, groups, fields in (
            (cats, metrics.breakdown["categories"], ("relations", "facts")),
            (rels, metrics.breakdown["relations"], ("category", "tph", "hpt", "facts")),
        ):
            for name, g in groups.items():
                entry = table.setdefault(name, {k: g[k] for k in fields} | {"runs": {}})
                entry["runs"][run.name] = {
                    "mrr": 100 * g["both"]["mrr"],
                    "hits@1": 100 * g["both"]["hits@1"],
                }
    for name, entry in rels.items():
        entry["reverse_share"] = share[name]
    return {
        "dataset": ds_dir.name,
        "runs": [r.name for r in runs],
        "categories": cats,
        "relations": rels,
    }


def _wide(groups: dict[str, Any], runs: list[str], first: tuple[str, ...], metric: str) -> str:
    """One row per group (most facts first): ``first`` fields, then ``metric`` of each run."""
    rows = []
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["facts"]):
        row: dict[str, str] = {"": name}
        for f in first:
            v = g[f]
            row[f.replace("_", " ")] = f"{v:.2f}" if isinstance(v, float) else str(v)
        for run in runs:
            cell = g["runs"].get(run)
            row[run] = f"{cell[metric]:.2f}" if cell else "-"
        rows.append(row)
    return markdown_table(rows)


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# The KD benchmark's runs by relation",
        "",
        f"`{doc['command']}` on {doc['machine']}, {doc['date']}.",
        "",
        "Test split under each run's own protocol (`kgdistill evaluate RUN --by-relation`), the lowest finished "
        "seed of each student (its run folder's -sN); "
        "both directions. Categories after Bordes et al. (2013): tph / hpt are a relation's mean tails per "
        "(head, relation) and heads per (relation, tail) over all splits, N when at least 1.5; 1-N is one head "
        "to many tails. reverse share: the fraction of a relation's facts (h, r, t) whose (t, r, h) is also a fact.",
    ]
    for ds in doc["rows"]:
        runs = ds["runs"]
        for metric, title in (("hits@1", "Hits@1"), ("mrr", "MRR")):
            lines += ["", f"## {ds['dataset']}: {title} (%)", ""]
            lines += [_wide(ds["categories"], runs, ("relations", "facts"), metric)]
            rel_fields = ("category", "tph", "hpt", "reverse_share", "facts")
            lines += [_wide(ds["relations"], runs, rel_fields, metric)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("benchmarks/work/static-kd-cpu"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--datasets", nargs="+", default=["wn18rr"])
    ap.add_argument(
        "--students",
        nargs="+",
        default=["complex-32", "complex-64", "distmult-32", "rotate-32"],
    )
    ap.add_argument("--methods", nargs="+", default=["none", "bkd"])
    args = ap.parse_args(argv)
    datasets = []
    with friendly_errors():
        for folder in dataset_folders(args.work, args.datasets):
            found = measure_dataset(folder, args.students, args.methods)
            if found is not None:
                datasets.append(found)
        text = write_script_result(
            args.out,
            "kd_relations",
            "benchmarks/kd_relations.py",
            argv or sys.argv[1:],
            {"benchmark": "kd-relations", "rows": datasets},
            markdown,
            why=f"no finished teacher or student run under {args.work}",
        )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
