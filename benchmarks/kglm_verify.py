"""Which selector finds the held-out facts: the precision of LM -> KG's candidates, by who ranks them.

On round 0 of ``benchmarks/kglm_rounds.py`` (same profile, dataset, seed and held-out facts; its round-0 KGE is
read from ``--rounds-work``, so run that benchmark first), the KGE's filtered top-k candidates of the sampled
training queries are ranked by

* ``lm``: the KGE-injected relation classifier's probability of the candidate's relation for its pair, trained
  with ``negatives`` "no relation" pairs per example (``lm.negatives`` of the rounds; 0: the classifier of the
  rounds, which only names the relation of a pair known to be linked; > 0: a verifier that has also seen
  type-plausible unlinked pairs);
* ``kge``: the KGE's own softmax probability of the candidate's tail (the self-training control);
* ``both``: their product;

and the precision of the ``top`` most confident (the share that are held-out training facts) is reported at
several ``top``, with the base rate of the candidates the classifier can score (its relations). Every language
model is trained once per dataset, seed and ``negatives`` and its scores are cached under ``--work``.

    python benchmarks/kglm_verify.py --datasets fb15k237 --seeds 0 --negatives 0 --negatives 2

Writes ``benchmarks/results/kglm_verify.{json,md}``.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import torch

from _common import (
    REPO,
    NothingFinished,
    friendly_errors,
    markdown_table,
    setup_logging,
    write_script_result,
)
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text
from kgdistill.kglm.augment import kge_confidence, lm_confidence, propose, selected_rows
from kgdistill.kglm.rounds import RoundsConfig, _lm_round, _prepare
from kglm_rounds import _config, load_spec

log = logging.getLogger("kglm_verify")
SELECTORS = ("lm", "kge", "both")


def score(cfg: RoundsConfig, rounds: Path, work: Path) -> dict[str, Any]:
    """The candidates' confidences by each selector and which are held-out facts, for ``cfg`` (cached)."""
    done = work / "scores.json"
    if done.is_file():
        return json.loads(done.read_text())  # type: ignore[no-any-return]
    kge_run = rounds / "lm-hard" / "round-0" / "kge"
    if not (kge_run / "best.safetensors").is_file():
        raise ConfigError(
            f"no round-0 KGE in {kge_run}: run benchmarks/kglm_rounds.py for this dataset and seed first"
        )
    kg, kept, held, _, reduced, task = _prepare(cfg, work)
    classifier, metrics = _lm_round(cfg, reduced, task, kge_run)
    kge = load_model(load_checkpoint(kge_run / "best.safetensors"))
    candidates = propose(kge, kg, kept, k=cfg.k, max_queries=cfg.max_queries, seed=cfg.seed)
    lm = lm_confidence(classifier, task.relations, candidates)
    kc = kge_confidence(kge, candidates)
    held_set = {tuple(f) for f in held.tolist()}
    out = {
        "lm_task": {"valid": metrics["valid"], "test": metrics["test"], "task": task.report},
        "confidence": {"lm": lm.tolist(), "kge": kc.tolist(), "both": (lm * kc).tolist()},
        "held": [tuple(f) in held_set for f in candidates.tolist()],
        "candidates": len(candidates),
    }
    atomic_write_text(done, json.dumps(out) + "\n")
    return out


def precisions(scores: dict[str, Any], tops: list[int]) -> dict[str, Any]:
    """Precision of each selector's ``top`` most confident candidates, among those the classifier scores."""
    is_held = torch.tensor(scores["held"], dtype=torch.bool)
    lm = torch.tensor(scores["confidence"]["lm"], dtype=torch.float)
    scored = ~lm.isnan()
    row: dict[str, Any] = {
        "scored": int(scored.sum()),
        "base": float(is_held[scored].float().mean()),
    }
    for name in SELECTORS:
        conf = torch.tensor(scores["confidence"][name], dtype=torch.float)
        conf[~scored] = float("nan")  # the same candidates for every selector
        for top in tops:
            rows = selected_rows(conf, threshold=None, top=top)
            row[f"{name}@{top}"] = float(is_held[rows].float().mean()) if len(rows) else None
    return row


def _stat(values: list[float | None]) -> str:
    vals = [100 * v for v in values if v is not None]
    if not vals:
        return "-"
    return (
        f"{vals[0]:.1f}"
        if len(vals) == 1
        else f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"
    )


def table(entries: list[dict[str, Any]], tops: list[int]) -> list[dict[str, Any]]:
    """One row per dataset, ``negatives`` and selector: precision at each ``top`` (mean ± std over seeds)."""
    rows = []
    for key in dict.fromkeys((e["dataset"], e["negatives"]) for e in entries):
        group = [e for e in entries if (e["dataset"], e["negatives"]) == key]
        for name in SELECTORS:
            first = key[1] == min(e["negatives"] for e in entries if e["dataset"] == key[0])
            if name == "kge" and not first:
                continue  # the KGE's ranking does not depend on the classifier: shown once
            row = {
                "dataset": key[0],
                "ranked by": name if name == "kge" else f"{name} (negatives {key[1]})",
                "seeds": len(group),
                "base rate": _stat([e["precision"]["base"] for e in group]),
            }
            for top in tops:
                row[f"precision@{top}"] = _stat([e["precision"][f"{name}@{top}"] for e in group])
            row["LM test macro-F1"] = (
                "-" if name == "kge" else _stat([e["lm_task"]["test"]["macro_f1"] for e in group])
            )
            rows.append(row)
    return rows


def _markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    return "\n".join(
        [
            "# LM -> KG: precision of the added facts by selector",
            "",
            f"`{doc['command']}`",
            "",
            f"Machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}; {doc['date']}. Profile "
            f"`{doc['profile']}` of `benchmarks/specs/kglm-rounds.yaml` (round 0 of `kglm_rounds.py`).",
            "",
            "Candidates: the round-0 KGE's filtered top-k tails of the sampled training queries, restricted to "
            "those whose relation the classifier knows. Precision: the share of the most confident `top` that "
            "are training facts held out on purpose (x100; mean ± std over seeds); base rate: that share over "
            "all of them. `negatives`: the classifier's 'no relation' pairs per example (0: the rounds' "
            "classifier). LM test macro-F1 is on its own task (with the 'no relation' class when negatives > 0).",
            "",
            markdown_table(doc["rows"]),
            "",
        ]
    )


@click.command()
@click.option("--datasets", multiple=True, default=("fb15k237",), show_default=True)
@click.option("--seeds", multiple=True, type=int, default=(0,), show_default=True)
@click.option("--negatives", multiple=True, type=int, default=(0, 2), show_default=True)
@click.option("--tops", multiple=True, type=int, default=(250, 1000, 3000), show_default=True)
@click.option("--profile", default="cpu", show_default=True)
@click.option(
    "--rounds-work",
    default=str(REPO / "benchmarks" / "work" / "kglm-rounds"),
    help="kglm_rounds.py's --work (default: benchmarks/work/kglm-rounds).",
)
@click.option("--work", default=str(REPO / "benchmarks" / "work" / "kglm-verify"))
@click.option("--out", default=str(REPO / "benchmarks" / "results"))
@click.option("--data-root", default=None, help="The datasets' folder (default: $KGDISTILL_DATA).")
@click.option("-q", "--quiet", is_flag=True)
def main(
    datasets: tuple[str, ...],
    seeds: tuple[int, ...],
    negatives: tuple[int, ...],
    tops: tuple[int, ...],
    profile: str,
    rounds_work: str,
    work: str,
    out: str,
    data_root: str | None,
    quiet: bool,
) -> None:
    """Rank LM -> KG's candidates by each selector and write the precision table."""
    setup_logging(quiet=quiet)
    with friendly_errors():
        spec, _ = load_spec(profile)
        entries = []
        for d in datasets:
            for s in seeds:
                base = _config(spec, profile, d, s, data_root)
                for n in negatives:
                    log.info("%s seed %d negatives %d", d, s, n)
                    cfg = replace(base, lm={**base.lm, "negatives": n})
                    name = Path(d).name
                    scores = score(
                        cfg,
                        Path(rounds_work) / name / f"seed-{s}",
                        Path(work) / name / f"seed-{s}-neg-{n}",
                    )
                    entries.append(
                        {
                            "dataset": name,
                            "seed": s,
                            "negatives": n,
                            "candidates": scores["candidates"],
                            "lm_task": scores["lm_task"],
                            "precision": precisions(scores, list(tops)),
                        }
                    )
        if not entries:
            raise NothingFinished("nothing to rank")
        text = write_script_result(
            Path(out),
            "kglm_verify",
            "benchmarks/kglm_verify.py",
            sys.argv[1:],
            {"profile": profile, "rows": table(entries, list(tops)), "runs": entries},
            _markdown,
        )
        click.echo(text)


if __name__ == "__main__":
    main()
