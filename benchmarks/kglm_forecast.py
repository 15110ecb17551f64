"""KG -> LM on a temporal text task: the ExpTime yes / no / unsure forecasting questions over ICEWS actors
(``llm-text/TimeLlama-ExpTime``), read by the packaged MiniLM with and without an ICEWS14 TNTComplEx injected at
the actors' mentions (:mod:`kgdistill.kglm.forecast`).

Rows, each over the seeds (mean +- std), on the test questions (each names an actor no training question names):

* ``majority``: the most frequent training answer (the floor);
* ``PLM alone``: the language model fine-tuned on the questions and their documents;
* ``PLM + injected TNTComplEx``: the same with the ICEWS14 KGE's entity vectors (frozen) injected;
* ``PLM + injected random table``: the same with a random table of the KGE's shape (the control: what the extra
  gate and projection give without the graph's knowledge).

The KGE is trained once (``--kge-epochs``, resumed and reused like every run). Writes
``benchmarks/results/kglm_forecast.{json,md}``.

    python benchmarks/kglm_forecast.py --seeds 0 --seeds 1 --seeds 2
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

import click
import torch

from _common import REPO, friendly_errors, markdown_table, setup_logging, write_script_result
from kgdistill.api import ensure_run
from kgdistill.catalog import data_root as resolve_root
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.data import load_kg
from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text
from kgdistill.kglm import (
    ForecastClassifier,
    align_table,
    evaluate_task,
    fit_task,
    forecast_task,
    macro_f1,
)
from kgdistill.plm.encoders import load_encoder

log = logging.getLogger("kglm_forecast")
ROWS = ("PLM alone", "PLM + injected TNTComplEx", "PLM + injected random table")


def _kge(work: Path, dataset: str, epochs: int, dim: int, root: str | None) -> Path:
    cfg = {
        "seed": 0,
        "data": {"name": dataset, **({"root": root} if root else {})},
        "model": {"name": "tntcomplex", "dim": dim, "init_scale": 0.01},
        "stages": [
            {
                "epochs": epochs,
                "objective": [
                    {"loss": "supervised_ce"},
                    {"loss": "n3", "weight": 0.01},
                    {"loss": "lambda3", "weight": 0.01},
                ],
            }
        ],
        "train": {"batch_size": 1000, "optimizer": "adagrad", "lr": 0.1, "eval_every": epochs},
        "eval": {"split": "test", "ties": "realistic", "time_aware": True},
    }
    run = work / f"tntcomplex-{dim}-{Path(dataset).name}-e{epochs}"
    ensure_run(cfg, run)
    return run


def run_one(
    row: str,
    seed: int,
    task: Any,
    encoder: Any,
    table: torch.Tensor,
    known: torch.Tensor,
    opts: dict[str, Any],
) -> dict[str, Any]:
    torch.manual_seed(seed)
    if row == "PLM alone":
        entity, mask = None, None
    elif row == "PLM + injected TNTComplEx":
        entity, mask = table, known
    else:  # the same shape and scale, no knowledge
        g = torch.Generator().manual_seed(10_000 + seed)
        entity = torch.randn(table.shape, generator=g) * table[known].std()
        mask = known
    model = ForecastClassifier(
        task,
        encoder.config,
        encoder.state,
        int(encoder.config["hidden_size"]),
        entity_table=entity,
        known=mask,
    )
    history = fit_task(
        model,
        task,
        epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        lr=opts["lr"],
        head_lr=opts["head_lr"],
        seed=seed,
    )
    return {
        "row": row,
        "seed": seed,
        "valid": history[-1],
        "test": evaluate_task(model, task, "test"),
    }


def _stat(values: list[float]) -> str:
    vals = [100 * v for v in values]
    return (
        f"{vals[0]:.2f}"
        if len(vals) == 1
        else f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"
    )


def _table(results: list[dict[str, Any]], majority: dict[str, float]) -> list[dict[str, Any]]:
    rows = [
        {
            "model": "majority (most frequent training answer)",
            "seeds": "-",
            "test accuracy": f"{100 * majority['accuracy']:.2f}",
            "test macro-F1": f"{100 * majority['macro_f1']:.2f}",
            "macro-F1 gain over PLM alone": "-",
        }
    ]
    plain = {r["seed"]: r for r in results if r["row"] == "PLM alone"}
    for name in ROWS:
        got = [r for r in results if r["row"] == name]
        if not got:
            continue
        gains = [
            r["test"]["macro_f1"] - plain[r["seed"]]["test"]["macro_f1"]
            for r in got
            if r["seed"] in plain
        ]
        rows.append(
            {
                "model": name,
                "seeds": len(got),
                "test accuracy": _stat([r["test"]["accuracy"] for r in got]),
                "test macro-F1": _stat([r["test"]["macro_f1"] for r in got]),
                "macro-F1 gain over PLM alone": _stat(gains)
                if name != "PLM alone" and gains
                else "-",
            }
        )
    return rows


def _markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    return "\n".join(
        [
            "# KG -> LM on ExpTime forecasting questions (ICEWS actors)",
            "",
            f"`{doc['command']}`",
            "",
            f"Machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}, CUDA {m['cuda']}; {doc['date']}.",
            f"Task: {json.dumps(doc['task'])}",
            f"KGE: {doc['kge']}",
            f"Fine-tuning: {json.dumps(doc['settings'])}",
            "",
            "Test questions each name an actor that no training or validation question names (x100; mean ± std "
            "over seeds):",
            "",
            markdown_table(doc["rows"]),
            "",
        ]
    )


@click.command()
@click.option("--seeds", multiple=True, type=int, default=(0,), show_default=True)
@click.option("--kge-epochs", default=10, show_default=True)
@click.option("--dim", default=64, show_default=True, help="The TNTComplEx rank.")
@click.option("--max-length", default=192, show_default=True)
@click.option("--epochs", default=3, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--lr", default=5e-5, show_default=True)
@click.option("--head-lr", default=1e-3, show_default=True)
@click.option("--encoder", default=None, help="A local encoder folder (default: packaged MiniLM).")
@click.option(
    "--dataset", default="icews14", show_default=True, help="The temporal graph of the actors."
)
@click.option(
    "--questions",
    default=None,
    help="The ExpTime file (default: llm-text/TimeLlama-ExpTime under the data root).",
)
@click.option("--data-root", default=None, help="The datasets' folder (default: $KGDISTILL_DATA).")
@click.option(
    "--work", default=str(REPO / "benchmarks" / "work" / "kglm-forecast"), show_default=False
)
@click.option("--out", default=str(REPO / "benchmarks" / "results"), show_default=False)
def main(
    seeds: tuple[int, ...],
    kge_epochs: int,
    dim: int,
    max_length: int,
    epochs: int,
    batch_size: int,
    lr: float,
    head_lr: float,
    encoder: str | None,
    dataset: str,
    questions: str | None,
    data_root: str | None,
    work: str,
    out: str,
) -> None:
    """Run (or finish) the forecasting rows and write their table."""
    setup_logging()
    with friendly_errors():
        root = resolve_root(data_root)
        if root is None and questions is None:
            raise ConfigError(
                "the datasets' folder is needed: pass --data-root or set KGDISTILL_DATA"
            )
        folder = Path(work)
        kge_run = _kge(folder, dataset, kge_epochs, dim, str(root) if root else None)
        kg = load_kg(dataset, root=root)
        enc = load_encoder(encoder)
        assert root is not None or questions is not None
        task = forecast_task(
            Path(questions)
            if questions
            else root / "llm-text" / "TimeLlama-ExpTime" / "eval_dataset.json",
            list(kg.entity_labels),
            enc.tokenizer,
            max_length=max_length,
        )
        ckpt = load_checkpoint(kge_run / "best.safetensors")
        table, known = align_table(
            task.entities,
            list(ckpt.meta["id_maps"]["entity"]),
            load_model(ckpt).entities.table().detach(),
        )
        opts = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "head_lr": head_lr}
        results = []
        for seed in seeds:
            for row in ROWS:
                done = (
                    folder
                    / f"{row.replace(' ', '_').replace('+', 'plus')}-s{seed}-L{max_length}-e{epochs}.json"
                )
                if done.is_file():
                    results.append(json.loads(done.read_text()))
                    continue
                log.info("%s, seed %d", row, seed)
                result = run_one(row, seed, task, enc, table, known, opts)
                atomic_write_text(done, json.dumps(result, indent=2) + "\n")
                results.append(result)
        train_labels = task.labels["train"]
        top = int(train_labels.mode().values)
        gold = task.labels["test"]
        majority = {
            "accuracy": float((gold == top).float().mean()),
            "macro_f1": macro_f1(torch.full_like(gold, top), gold, task.num_labels),
        }
        kge_metrics = json.loads((kge_run / "metrics.json").read_text())["sides"]["both"]
        text = write_script_result(
            Path(out),
            "kglm_forecast",
            "benchmarks/kglm_forecast.py",
            sys.argv[1:],
            {
                "task": task.report,
                "kge": f"TNTComplEx rank {dim}, {kge_epochs} epochs on ICEWS14 (test MRR "
                f"{100 * kge_metrics['mrr']:.1f}, time-aware filter); {int(known.sum())} of the task's "
                f"{len(task.entities)} entities known",
                "settings": {"max_length": max_length, **opts},
                "rows": _table(results, majority),
                "results": results,
            },
            _markdown,
        )
        click.echo(text)


if __name__ == "__main__":
    main()
