"""benchmarks/step_profile.py: times two epochs, profiles a third, writes both files, restores the trainer."""

from __future__ import annotations

import json
from pathlib import Path

import kgdistill.train as train_module
from step_profile import main

FIXTURES = Path(__file__).parent / "fixtures"


def test_step_profile_writes_times_and_the_profile(tmp_path: Path) -> None:
    before = train_module._epoch
    main(
        [
            "--dataset",
            str(FIXTURES / "wn18rr-mini"),
            "--dim",
            "8",
            "--batch-size",
            "64",
            "--queries",
            "256",
            "--device",
            "cpu",
            "--out",
            str(tmp_path),
        ]
    )
    assert train_module._epoch is before
    doc = json.loads((tmp_path / "step_profile.json").read_text())
    assert doc["steps_per_epoch"] == 4
    assert len(doc["epoch_seconds"]) == 2 and all(t > 0 for t in doc["epoch_seconds"])
    assert "aten::mm" in doc["profile"]
    md = (tmp_path / "step_profile.md").read_text()
    assert "4 steps an epoch" in md and "aten::mm" in md
