"""benchmarks/subnormal_step.py: trains the run, probes each (weights, mode) in a fresh process, writes both files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subnormal_step import main


@pytest.mark.slow
def test_subnormal_step_probes_each_setting_in_its_own_process(tmp_path: Path) -> None:
    main(
        [
            *("--dim", "8", "--epochs", "1", "--steps", "2", "--batch-size", "200"),
            *("--work", str(tmp_path / "work"), "--out", str(tmp_path)),
        ]
    )
    doc = json.loads((tmp_path / "subnormal_step.json").read_text())
    rows = {(r["weights"], r["mode"]): r for r in doc["rows"]}
    assert set(rows) == {(w, m) for w in ("init", "trained") for m in ("kept", "flushed")}
    for (_, mode), r in rows.items():
        assert r["flushed_share"] == (1.0 if mode == "flushed" else 0.0)
        assert len(r["step_s"]) == len(r["forward_s"]) == 2 and r["step_median_s"] > 0
        assert r["relation_entries"] == 200 * 8 and r["grad_entries"] > 0
        if mode == "flushed":
            assert r["relation_subnormal"] == r["grad_subnormal"] == 0
    # the trained weights are the run's: another loss than the untrained model's
    assert rows[("trained", "kept")]["loss"] != rows[("init", "kept")]["loss"]
    assert set(doc["kept_over_flushed"]) == {"init", "trained"}
    # no subnormals at this size: flushing changes nothing, the losses are bit-identical
    assert doc["losses_equal"] == {"init": True, "trained": True}
    assert 0 < doc["valid_mrr"] < 1
    md = (tmp_path / "subnormal_step.md").read_text()
    assert "TA-DistMult-8 on yago11k" in md and "threads flushing" in md
