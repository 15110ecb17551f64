"""Same numbers across versions: a short real distillation whose metrics two versions of kgdistill must agree on.

A TNTComplEx-32 teacher (6 epochs) on the YAGO11k subset of ``tests/fixtures/yago11k-mini``, then a TTransE-8
student (6 epochs) with BKD (T = 2) and FitNet hints from it; the test metrics of both are printed as JSON with
full precision. Refactors of the training loop, the evaluator or the models must leave them bit for bit equal:

    python benchmarks/same_numbers.py > new.json
    git worktree add /tmp/old <rev> && PYTHONPATH=/tmp/old/src python benchmarks/same_numbers.py > old.json
    cmp old.json new.json

``--reference-ce`` trains with ``supervised_ce``'s unfused ``log_softmax`` + ``nll_loss`` (``fused: false``), the
only path of versions before the fused cross-entropy: compare those with it. The fused loss equals the reference
up to float rounding, so the default run's metrics may differ from it in the last digits (on this run they
are equal). ``--unfused-optimizer`` likewise trains with ``train.fused_optimizer: false``, the optimiser path of
versions before the fused kernels (equal up to float rounding too): compare older versions with
``--reference-ce --unfused-optimizer``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from kgdistill import api
from kgdistill.config import parse_config

MINI = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "yago11k-mini"


def _config(**parts: Any) -> Any:
    base = {
        "seed": 0,
        "data": {"name": str(MINI)},
        "train": {
            "batch_size": 500,
            "optimizer": "adam",
            "lr": 0.01,
            "eval_every": 2,
            "progress": False,
            # --unfused-optimizer: the optimiser path of versions before the fused kernels
            "fused_optimizer": "--unfused-optimizer" not in sys.argv[1:],
        },
    }
    return parse_config({**base, **parts})


def main() -> None:
    ce: dict[str, Any] = {"loss": "supervised_ce"}
    if "--reference-ce" in sys.argv[1:]:
        ce["fused"] = False
    work = Path(tempfile.mkdtemp(prefix="same-numbers-"))
    teacher = api.train(
        _config(
            model={"name": "tntcomplex", "dim": 32},
            stages=[
                {
                    "epochs": 6,
                    "objective": [ce, {"loss": "n3", "weight": 0.01}],
                }
            ],
        ),
        out=work / "teacher",
    )
    student = api.train(
        _config(
            model={"name": "ttranse", "dim": 8},
            teachers={"kge": {"name": "checkpoint", "path": str(work / "teacher")}},
            stages=[
                {
                    "epochs": 6,
                    "objective": [
                        ce,
                        {"loss": "kd_kl", "teacher": "kge", "temperature": 2.0},
                        {"loss": "fitnet", "teacher": "kge", "fields": ["h", "r", "t"]},
                    ],
                }
            ],
        ),
        out=work / "student",
    )
    doc = {"teacher": teacher.metrics.sides["both"], "student": student.metrics.sides["both"]}
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
