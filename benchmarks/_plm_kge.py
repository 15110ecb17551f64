"""The KGE rows of benchmarks/plm_contexts.py: a ComplEx teacher on the same split, and small ComplEx students
without distillation, distilled from the bi-encoder (through a top-k cache of its scores), from the bi-encoder and
the ComplEx teacher together, and from the ComplEx teacher alone (the control: what the texts add to it): the
deployable form of what the texts and contexts taught."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from _common import REPO
from _latency import single_query_latency_ms
from kgdistill.api import cache, ensure_run
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.runs import finished

__all__ = ["kge_rows", "result_row"]

log = logging.getLogger("plm_contexts")


def _config(
    name: str,
    dataset: str,
    seed: int,
    dim: int,
    epochs: int,
    objective: list[dict[str, Any]],
    teachers: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "seed": seed,
        "data": {"name": dataset},
        "model": {"name": "complex", "dim": dim, "init_scale": 0.001},
        "teachers": teachers,
        "stages": [{"epochs": epochs, "objective": objective}],
        "train": {
            "batch_size": 1000,
            "optimizer": "adagrad",
            "lr": 0.1,
            "eval_every": max(epochs // 4, 1),
            "patience": 0,
            "progress": False,
            "device": device,
        },
        "eval": {"split": "test", "ties": "realistic"},
    }


def result_row(
    model: str, dataset: str, source: str, seed: int, metrics: dict[str, Any], run: Path
) -> dict[str, Any]:
    """One row of the table from a run's (or an evaluation's) metrics."""
    both = metrics["sides"]["both"]
    return {
        "dataset": dataset,
        "model": model,
        "source": source,
        "seed": seed,
        "parameters": metrics["protocol"].get("num_parameters") or metrics.get("num_parameters"),
        "train_seconds": metrics.get("train_seconds"),
        "queries": metrics["protocol"]["queries"],
        "mrr": both["mrr"],
        "hits@1": both["hits@1"],
        "hits@3": both["hits@3"],
        "hits@10": both["hits@10"],
        "run": str(run.relative_to(REPO)) if run.is_relative_to(REPO) else run.name,
    }


def _row(label: str, dataset: str, source: str, seed: int, run: Path) -> dict[str, Any]:
    metrics = json.loads((run / "metrics.json").read_text())
    model = load_model(load_checkpoint(run / "best.safetensors")).eval()
    with torch.inference_mode():
        ms = single_query_latency_ms(model, torch.tensor([[0, 0, 0]]), repeats=50)
    return {**result_row(label, dataset, source, seed, metrics, run), "ms_per_query": round(ms, 3)}


def kge_rows(
    dataset: str,
    seed: int,
    plm_run: Path,
    source: str,
    budget: dict[str, Any],
    work: Path,
    device: str,
    train: bool = True,
) -> list[dict[str, Any]]:
    """The ComplEx teacher and the four students of one seed (``budget``: the profile's ``kge`` block); with
    ``train`` false, the rows of the finished runs only (nothing trains, no cache is written)."""
    folder = work / Path(dataset).name
    sup = [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.05}]
    teacher = folder / f"complex-{budget['teacher_dim']}-s{seed}"
    rows: list[dict[str, Any]] = []
    if not train and not finished(teacher):
        return rows
    ensure_run(
        _config(
            teacher.name,
            dataset,
            seed,
            budget["teacher_dim"],
            budget["teacher_epochs"],
            sup,
            {},
            device,
        ),
        teacher,
    )
    rows.append(_row(f"complex-{budget['teacher_dim']} (teacher)", dataset, "-", seed, teacher))
    scores = folder / f"cache-bi_encoder-{source}-s{seed}.safetensors"
    if train and not scores.is_file():
        log.info("writing the bi-encoder's top-%d for every training query", budget["cache_k"])
        cache(plm_run, scores, k=int(budget["cache_k"]), progress=False)
    # the ComplEx teacher's full score rows (float16), written once: its KD term is exact and a student step
    # costs no teacher forward pass (a dim-500 teacher would otherwise double a student's training time)
    rows_cache = folder / f"cache-{teacher.name}.safetensors"
    if train and not rows_cache.is_file():
        log.info("writing %s's full score rows for every training query", teacher.name)
        cache(teacher, rows_cache, k=None, progress=False)
    kd = {"temperature": budget["temperature"], "weight": budget["weight"]}
    variants = {
        "": ({}, sup),
        f" <- bi_encoder ({source})": (
            {"plm": {"name": "cache", "path": str(scores)}},
            [*sup, {"loss": "kd_kl", "teacher": "plm", **kd}],
        ),
        f" <- bi_encoder ({source}) + complex-{budget['teacher_dim']}": (
            {
                "plm": {"name": "cache", "path": str(scores)},
                "kge": {"name": "cache", "path": str(rows_cache)},
            },
            [
                *sup,
                {"loss": "kd_kl", "teacher": "plm", **kd},
                {"loss": "kd_kl", "teacher": "kge", **kd},
            ],
        ),
        # the control: the ComplEx teacher alone, what the texts add on top of it
        f" <- complex-{budget['teacher_dim']}": (
            {"kge": {"name": "cache", "path": str(rows_cache)}},
            [*sup, {"loss": "kd_kl", "teacher": "kge", **kd}],
        ),
    }
    dim = budget["student_dim"]
    for i, (suffix, (teachers, objective)) in enumerate(variants.items()):
        # the epochs (and the ComplEx teacher's dim) name the folder: another budget trains new students beside
        # the earlier ones
        tag = f"-t{budget['teacher_dim']}" if i >= 2 else ""
        run = folder / f"complex-{dim}-student{i}-e{budget['student_epochs']}{tag}-s{seed}"
        if not train and not finished(run):
            continue
        cfg = _config(
            run.name, dataset, seed, dim, budget["student_epochs"], objective, teachers, device
        )
        ensure_run(cfg, run)
        rows.append(
            _row(
                f"complex-{dim}{suffix}",
                dataset,
                source if "bi_encoder" in suffix else "-",
                seed,
                run,
            )
        )
    return rows
