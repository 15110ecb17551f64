"""A KD student reading its teacher's score rows from a score cache, against a teacher forward pass per step.

Trains (or reuses) a teacher, writes its full score rows over the training queries once (timed), then trains the
same BKD student from the same seed with the plain checkpoint teacher, with ``score_cache`` set, and with the rows
file alone as its teacher (``name: cache``, the file ``kgdistill cache`` writes), in turn (``--repeats`` times
each, one thread), and reports seconds per training epoch, the speed-up, the one-time cost of the rows and their
size, and the largest relative difference of the logged KD loss between the checkpoint and each cache (the rows
are float16). Writes ``results/score_cache_speed.{json,md}``.

    python benchmarks/score_cache_speed.py --dataset yago11k
    python benchmarks/score_cache_speed.py --dataset fb15k237n    # $KGDISTILL_DATA: a static ComplEx pair
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import click
import torch
from safetensors import safe_open

from _common import REPO, friendly_errors, markdown_table, setup_logging, write_script_result
from kgdistill.api import cache, ensure_run, train
from kgdistill.config import load_config, parse_config

TEMPORAL = {"yago11k", "wikidata12k", "icews14"}
#: the pairs of the KD benchmarks: TNTComplEx-256 -> TA-DistMult-32 (temporal-kd-tuned.yaml), ComplEx-500 ->
#: ComplEx-32 (plm-contexts.yaml's cpu profile)
PAIRS = {
    "temporal": {
        "data": {"time": {"granularity": "bins", "min_bin_size": 300, "interval_mode": "start"}},
        "teacher": {"name": "tntcomplex", "dim": 256, "init_scale": 0.01},
        "student": {"name": "ta_distmult", "dim": 32, "init_scale": 0.1},
        "student_train": {"optimizer": "adam", "lr": 0.01},
        "supervised": [{"loss": "supervised_ce"}],
    },
    "static": {
        "data": {},
        "teacher": {"name": "complex", "dim": 500, "init_scale": 0.001},
        "student": {"name": "complex", "dim": 32, "init_scale": 0.001},
        "student_train": {"optimizer": "adagrad", "lr": 0.1},
        "supervised": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.05}],
    },
}


def _teacher(dataset: str, pair: dict[str, Any], epochs: int, folder: Path) -> Path:
    cfg = {
        "name": f"teacher-{dataset}",
        "data": {"name": dataset, **pair["data"]},
        "model": pair["teacher"],
        "stages": [{"epochs": epochs, "objective": pair["supervised"]}],
        "train": {"batch_size": 1000, "optimizer": "adagrad", "lr": 0.1, "progress": False},
        "eval": {"split": "valid"},
    }
    ensure_run(cfg, folder)
    return folder


#: how each arm's student reads its teacher: the checkpoint, the checkpoint with ``score_cache``, the rows alone
MODES = ("checkpoint", "score cache", "cache file")


def _student(
    dataset: str, pair: dict[str, Any], teacher: Path, rows: Path, mode: str, epochs: int, out: Path
) -> list[dict[str, Any]]:
    """Train the BKD student afresh in ``out``, its teacher read as ``mode`` says; its epoch log lines."""
    entry: dict[str, Any] = {"name": "checkpoint", "path": str(teacher)}
    if mode == "score cache":
        entry["score_cache"] = str(rows)
    elif mode == "cache file":
        entry = {"name": "cache", "path": str(rows)}
    cfg = {
        "name": out.name,
        "seed": 0,
        "data": {"name": dataset, **pair["data"]},
        "model": pair["student"],
        "teachers": {"kge": entry},
        "stages": [
            {
                "epochs": epochs,
                "objective": [
                    *pair["supervised"],
                    {"loss": "kd_kl", "teacher": "kge", "temperature": 2.0, "weight": 1.0},
                ],
            }
        ],
        "train": {
            "batch_size": 1000,
            **pair["student_train"],
            "eval_every": epochs,
            "progress": False,
        },
        "eval": {"split": "valid"},
    }
    shutil.rmtree(out, ignore_errors=True)
    train(parse_config(cfg), out=out)
    lines = (out / "log.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if '"event": "epoch"' in x]


def _markdown(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    return (
        "# KD student: teacher scores from a score cache vs a forward pass per step\n\n"
        f"`{doc['command']}`; {doc['machine'].get('cpu')}, {s['threads']} thread(s); {doc['note']}\n\n"
        + markdown_table(doc["rows"])
        + f"\nSpeed-up {s['speed_up']}x per epoch with `score_cache`, {s['speed_up_cache_file']}x with the rows "
        f"file as the teacher. The rows: {s['queries']:,} training queries x "
        f"{s['entities']:,} entities, {s['rows_gib']} GiB (float16), written once in {s['write_seconds']} s. "
        f"Largest relative difference of the logged KD loss: {s['kd_loss_max_rel_diff']:.1e}.\n"
    )


@click.command()
@click.option("--dataset", default="yago11k", show_default=True)
@click.option(
    "--teacher",
    "teacher_run",
    default=None,
    help="A finished teacher run of the dataset to use (default: train one of the pair's in --work).",
)
@click.option(
    "--teacher-epochs", default=2, show_default=True, help="Speed does not depend on them."
)
@click.option("--epochs", default=2, show_default=True, help="Student epochs per timed run.")
@click.option("--repeats", default=2, show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option(
    "--note", default="", help="What else ran on the machine (written beside the numbers)."
)
@click.option("--work", default=str(REPO / "benchmarks" / "work" / "score-cache-speed"))
@click.option("--out", default=str(REPO / "benchmarks" / "results"))
def main(
    dataset: str,
    teacher_run: str | None,
    teacher_epochs: int,
    epochs: int,
    repeats: int,
    threads: int,
    note: str,
    work: str,
    out: str,
) -> None:
    setup_logging()
    torch.set_num_threads(threads)
    with friendly_errors():
        family = Path(dataset).name.lower().split("-")[0]  # yago11k-mini: a subset of yago11k
        pair = PAIRS["temporal" if family in TEMPORAL else "static"]
        folder = Path(work) / Path(dataset).name
        if teacher_run is not None:
            teacher = Path(teacher_run)
            pair = {**pair, "teacher": load_config(teacher / "config.yaml")[0].model.model_dump()}
            folder = folder / teacher.name
        else:
            teacher = _teacher(dataset, pair, teacher_epochs, folder / "teacher")
        folder.mkdir(parents=True, exist_ok=True)
        rows = folder / "train-scores.safetensors"
        timing = folder / "write.json"
        if not rows.is_file() or not timing.is_file():
            t0 = time.perf_counter()
            cache(teacher, rows, k=None, progress=False)
            timing.write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
        with safe_open(str(rows), "pt") as f:
            header = json.loads(f.metadata()["kgdistill"])
        seconds: dict[str, list[float]] = {m: [] for m in MODES}
        kd: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(repeats):
            for mode in MODES:  # in turn, so all see the same machine
                log = _student(
                    dataset,
                    pair,
                    teacher,
                    rows,
                    mode,
                    epochs,
                    folder / f"student-{mode.replace(' ', '-')}-r{r}",
                )
                seconds[mode] += [e["seconds"] for e in log]
                kd[mode] = [e["kd_kl[kge]"] for e in log]
        per = {m: statistics.median(v) for m, v in seconds.items()}
        doc_rows = [
            {
                "teacher": f"{pair['teacher']['name']}-{pair['teacher']['dim']}",
                "student": f"{pair['student']['name']}-{pair['student']['dim']}",
                "teacher scores from": mode,
                "s / epoch (median)": round(per[mode], 2),
                "epochs timed": len(seconds[mode]),
                "last KD loss": round(kd[mode][-1], 5),
            }
            for mode in seconds
        ]
        diff = max(
            abs(a - b) / max(abs(a), 1e-12)
            for mode in MODES[1:]
            for a, b in zip(kd["checkpoint"], kd[mode], strict=True)
        )
        summary = {
            "dataset": Path(dataset).name,
            "threads": threads,
            "speed_up": round(per["checkpoint"] / per["score cache"], 2),
            "speed_up_cache_file": round(per["checkpoint"] / per["cache file"], 2),
            "queries": header["queries"],
            "entities": header["num_entities"],
            "rows_gib": round(rows.stat().st_size / 2**30, 2),
            "write_seconds": json.loads(timing.read_text())["seconds"],
            "kd_loss_max_rel_diff": diff,
        }
        text = write_script_result(
            Path(out),
            f"score_cache_speed-{Path(dataset).name}",
            "benchmarks/score_cache_speed.py",
            sys.argv[1:],
            {"rows": doc_rows, "summary": summary, "note": note or "nothing else noted"},
            _markdown,
        )
    click.echo(text)


if __name__ == "__main__":
    main()
