"""Teacher quality: train the teacher configs of ``configs/teacher/`` and report test metrics at what cost.

Every config runs through the normal pipeline (filtered ranking under the run's own filter, time-aware for
temporal data and named per dataset in ``teachers.md``; realistic ties, head and tail queries) in a run folder
under ``--work``: a finished run is reused, an interrupted one resumed. Writes ``teachers.json`` (rows with
``dataset``, ``model``, ``dim``, ``mrr``, ``hits1``, ``hits3``, ``hits10``, ``mr``, ``device``, ``train_s``,
``protocol``, ...) and ``teachers.md`` in ``--out``, each row next to the published figure it is measured against.

    python benchmarks/teachers.py --configs configs/teacher/tntcomplex-yago11k.yaml \
        configs/teacher/tntcomplex-wikidata12k.yaml configs/teacher/tntcomplex-icews14.yaml
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from _common import filter_modes, filter_protocol, markdown_table
from kgdistill.api import ensure_run
from kgdistill.runs import flush_denormals, resolve_device

#: Published test MRR (fraction) each teacher is compared with, and the issue's target.
REFERENCE = {
    "icews14": ("TNTComplEx (Lacroix et al. 2020)", 0.56, 0.56),
    "yago11k": ("TimePlex (Jain et al. 2020)", 0.236, 0.23),
    "wikidata12k": ("TimePlex (Jain et al. 2020)", 0.334, 0.33),
    "fb15k237": ("ComplEx-N3 (Lacroix et al. 2018)", 0.37, 0.35),
    "wn18rr": ("ComplEx-N3 (Lacroix et al. 2018)", 0.48, 0.47),
}


def _row(cfg: dict[str, Any], metrics: dict[str, Any], device: str) -> dict[str, Any]:
    both = metrics["sides"]["both"]
    ds = metrics["dataset"]
    ref = REFERENCE.get(ds, ("", None, None))
    return {
        "dataset": ds,
        "model": metrics["model"],
        "dim": cfg["model"].get("dim"),
        "mrr": both["mrr"],
        "hits1": both["hits@1"],
        "hits3": both["hits@3"],
        "hits10": both["hits@10"],
        "mr": both["mr"],
        "device": device,
        "train_s": metrics["train_seconds"],
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "params": metrics["num_parameters"],
        "protocol": metrics["protocol"],
        "reference": ref[0],
        "reference_mrr": ref[1],
        "target_mrr": ref[2],
        "config": cfg.get("name"),
        # the recurrence term over the training facts (model.history) and the seed: rows of their own
        "history": bool(cfg["model"].get("history", False)),
        "seed": int(cfg.get("seed", 0)),
        "command": "python " + shlex.join(sys.argv),
    }


def _merge(rows: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """``rows`` with ``row`` replacing the row of the same dataset, model, dim, device, history term and seed."""
    return [r for r in rows if (*_key(r), _seed(r)) != (*_key(row), _seed(row))] + [row]


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    """What one line of the table shows (its seeds aggregated): dataset, model, dim, device, history term."""
    return (r["dataset"], r["model"], r["dim"], r["device"], bool(r.get("history", False)))


def _seed(r: dict[str, Any]) -> int:
    return int(r.get("seed", 0))


#: the columns of the teachers' table, in order
_COLUMNS = (
    "dataset",
    "model",
    "dim",
    "seeds",
    "MRR",
    "H@1",
    "H@3",
    "H@10",
    "MR",
    "device",
    "train s",
    "epochs",
    "published MRR",
    "target",
)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per teacher (by dataset, then model), its seeds' mean ± std: test metrics in percent,
    cost, published MRR."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (_key(r), _seed(r))):
        groups.setdefault(_key(r), []).append(r)
    return markdown_table([_table_row(g) for g in groups.values()], _COLUMNS)


def _pm(values: list[float], scale: float, digits: int) -> str:
    """``mean ± std`` of ``values`` times ``scale`` (the mean alone for one value)."""
    v = [x * scale for x in values]
    mean = sum(v) / len(v)
    if len(v) == 1:
        return f"{mean:.{digits}f}"
    std = (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _table_row(runs: list[dict[str, Any]]) -> dict[str, str]:
    """A teacher's line (its seeds' ``runs``): metrics, next to the published MRR and whether the mean meets the
    target."""
    r = runs[0]
    mrr = sum(x["mrr"] for x in runs) / len(runs)
    ref = f"{r['reference_mrr'] * 100:.1f} ({r['reference']})" if r["reference_mrr"] else "-"
    tgt = (
        f">= {r['target_mrr'] * 100:.0f}: {'met' if mrr >= r['target_mrr'] else 'not met'}"
        if r["target_mrr"]
        else "-"
    )
    return {
        "dataset": str(r["dataset"]),
        "model": str(r["model"]) + (" + history" if r.get("history") else ""),
        "dim": str(r["dim"]),
        "seeds": ", ".join(str(_seed(x)) for x in runs),
        "MRR": _pm([x["mrr"] for x in runs], 100, 2),
        "H@1": _pm([x["hits1"] for x in runs], 100, 2),
        "H@3": _pm([x["hits3"] for x in runs], 100, 2),
        "H@10": _pm([x["hits10"] for x in runs], 100, 2),
        "MR": _pm([x["mr"] for x in runs], 1, 1),
        "device": str(r["device"]),
        "train s": f"{sum(x['train_s'] for x in runs) / len(runs):.0f}",
        "epochs": ", ".join(str(x["epochs"]) for x in runs),
        "published MRR": ref,
        "target": tgt,
    }


def teachers_markdown(doc: dict[str, Any]) -> str:
    """``teachers.md`` of a result document (rewritable from ``teachers.json``); the protocol line names each
    dataset's filter as its run recorded it."""
    recorded = [{**r, "filter_mode": r.get("protocol", {}).get("filter_mode")} for r in doc["rows"]]
    filters = filter_protocol(filter_modes(sorted(recorded, key=lambda r: r["dataset"]), None))
    lines = [
        "# Teacher quality",
        "",
        f"Test split; filtered ranking with the {filters}; realistic ties; head and tail queries. MRR and Hits "
        "in percent.",
        "",
        f"Command: `{doc['command']}`  ",
        *[
            f"Rows of `{c}`  "
            for c in dict.fromkeys(r["command"] for r in doc["rows"] if "command" in r)
            if c != doc["command"]
        ],
        f"Machine: {doc['machine']}  ",
        f"Date: {doc['date']}",
        "",
        table(doc["rows"]),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--configs", nargs="*", type=Path, default=[], help="teacher configs to run (or reuse)"
    )
    ap.add_argument(
        "--runs",
        nargs="*",
        type=Path,
        default=[],
        help="finished run folders to report as they are (e.g. the temporal-kd teachers)",
    )
    ap.add_argument(
        "--set", dest="overrides", nargs="*", default=[], help="key.path=value for every config"
    )
    ap.add_argument(
        "--seeds",
        nargs="*",
        type=int,
        default=None,
        help="seeds of every config (default: its own); a seed other than the config's runs in <stem>-s<seed>",
    )
    ap.add_argument("--work", type=Path, default=Path("benchmarks/work/teachers"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    from kgdistill.config import apply_overrides

    results = args.out / "teachers.json"
    earlier = json.loads(results.read_text()) if results.is_file() else {"rows": []}
    rows = [{"command": earlier["command"], **r} for r in earlier["rows"]]
    for path, seed in ((p, s) for p in args.configs for s in args.seeds or [None]):
        raw = apply_overrides(yaml.safe_load(path.read_text()), args.overrides)
        raw.setdefault("train", {})["progress"] = False
        own = raw.get("seed", 0)
        raw["seed"] = own if seed is None else seed
        device = str(resolve_device(raw["train"].get("device", "auto")))
        stem = path.stem if raw["seed"] == own else f"{path.stem}-s{raw['seed']}"
        metrics = ensure_run(raw, args.work / stem)
        row = _row(raw, metrics, device)
        rows = _merge(rows, row)
        print(
            f"{stem}: test MRR {row['mrr']:.4f} in {row['train_s']:.0f} s on {device}",
            flush=True,
        )
    for run in args.runs:
        metrics = json.loads((run / "metrics.json").read_text())
        raw = yaml.safe_load((run / "config.yaml").read_text())
        device = str(resolve_device(raw["train"].get("device", "auto")))
        row = {**_row(raw, metrics, device), "run": str(run)}
        rows = _merge(rows, row)
    if not rows:
        sys.exit(
            f"nothing finished: no teacher to report (give --configs or --runs; {results} holds no "
            "earlier rows); no results written"
        )
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }
    doc = {
        "command": "python " + shlex.join(sys.argv),
        "machine": machine,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "teachers.md").write_text(teachers_markdown(doc))


if __name__ == "__main__":
    flush_denormals()  # before any tensor work, so that every thread flushes (kgdistill.runs)
    main()
