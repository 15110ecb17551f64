"""benchmarks/kglm_forecast.py end to end on the fixtures (the ICEWS14 subset, 60 real ExpTime questions, the
tiny local encoder): every row trained, the table written, and a second call that reuses every finished row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.slow
def test_the_forecast_driver_trains_every_row(tiny_encoder_folder: Path, tmp_path: Path) -> None:
    import kglm_forecast

    args = ["--dataset", str(FIXTURES / "icews14-mini"), "--questions"]
    args += [
        str(FIXTURES / "llm-text-mini" / "exptime-mini.json"),
        "--encoder",
        str(tiny_encoder_folder),
    ]
    args += ["--kge-epochs", "2", "--dim", "8", "--max-length", "64", "--epochs", "1"]
    args += [
        "--seeds",
        "0",
        "--seeds",
        "1",
        "--work",
        str(tmp_path / "w"),
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(kglm_forecast.main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "kglm_forecast.json").read_text())
    assert [r["model"] for r in doc["rows"]] == [
        "majority (most frequent training answer)",
        *kglm_forecast.ROWS,
    ]
    assert all("±" in r["test macro-F1"] for r in doc["rows"][1:])
    assert doc["task"]["parsed"] == 60 and len(doc["results"]) == 6
    stamps = {p: p.stat().st_mtime for p in (tmp_path / "w").glob("*.json")}
    assert len(stamps) == 6
    again = CliRunner().invoke(kglm_forecast.main, args)
    assert again.exit_code == 0, again.output
    assert stamps == {p: p.stat().st_mtime for p in stamps}
