"""The evaluation-speed benchmark (benchmarks/eval_speed.py): with ``--train-epochs`` it times a model PyKEEN
trained, kgdistill, the floor and PyKEEN still agree on it, and trained and untrained rows are kept apart."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("pykeen")

from eval_speed import bench_dim, write_results
from kgdistill.data.kg import KG


def args(epochs: int) -> argparse.Namespace:
    return argparse.Namespace(
        model="distmult",
        train_epochs=epochs,
        pykeen_dims=[8],
        pykeen_batch_size=64,
        max_test=None,
        chunk=None,
        repeats=1,
    )


@pytest.mark.slow  # PyKEEN's training loop: about 0.2 s an epoch even on this small graph
def test_trained_rows_agree_and_are_kept_apart(tiny_kg: KG, tmp_path: Path) -> None:
    """Trained by PyKEEN's sLCWA loop, the model ranks the test facts far better than its random initialisation;
    ``bench_dim`` exits on any disagreement between kgdistill, the floor and PyKEEN, so returning is the check
    that all three rank the trained model alike."""
    cpu = torch.device("cpu")
    untrained = bench_dim(tiny_kg, "mini", 8, args(0), cpu)
    trained = bench_dim(tiny_kg, "mini", 8, args(100), cpu)
    assert untrained["train_epochs"] == 0 and untrained["train_s"] == 0
    assert trained["train_epochs"] == 100 and trained["train_s"] > 0
    assert trained["mrr_kgdistill"] == trained["mrr_floor"]
    assert trained["mrr_pykeen"] == pytest.approx(trained["mrr_kgdistill"], rel=1e-5)
    assert trained["mrr_kgdistill"] > 2 * untrained["mrr_kgdistill"]
    info = {"command": "python benchmarks/eval_speed.py", "machine": {"date": "now", "cpu": "x"}}
    for r in (untrained, trained):
        r |= info | {"machine": info["machine"] | {"cores": 2, "torch_threads": 1}}
        r["machine"] |= {"torch": torch.__version__, "pykeen": "1.11.1", "load_average": None}
    write_results([untrained], tmp_path)
    write_results([trained], tmp_path)  # another call: the untrained row stays
    rows = json.loads((tmp_path / "eval_speed.json").read_text())
    assert [r["train_epochs"] for r in rows] == [0, 100]
    table = (tmp_path / "eval_speed.md").read_text()
    assert "| mini | distmult | 8 | 0 | cpu |" in table
    assert "| mini | distmult | 8 | 100 | cpu |" in table
