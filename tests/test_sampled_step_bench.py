"""benchmarks/sampled_step.py: its two pairs agree (it exits on a mismatch) and both rows are written."""

from __future__ import annotations

import json
from pathlib import Path

from sampled_step import main


def test_sampled_step_writes_both_pieces(tmp_path: Path) -> None:
    args = [
        "--entities",
        "300",
        "--batch",
        "40",
        "--candidates",
        "5",
        "--dim",
        "8",
        "--repeats",
        "2",
    ]
    assert main([*args, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "sampled_step.json").read_text())
    assert [r["piece"] for r in doc["rows"]] == [
        "candidate scores",
        "lookups of heads and candidates",
    ]
    for row in doc["rows"]:
        assert all(v > 0 for k, v in row.items() if k != "piece")
    assert "_CandidateDot" in (tmp_path / "sampled_step.md").read_text()
