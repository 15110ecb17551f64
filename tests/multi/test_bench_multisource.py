"""The multi-source benchmark driver (benchmarks/multisource.py) on the DBP15K zh_en subset: rows,
time-to-quality, reuse, result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kgdistill.errors import ConfigError
from multisource import SPEC, curve, run_multisource, time_to

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dbp15k-mini" / "zh_en"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    sp = yaml.safe_load(SPEC.read_text())
    sp["pairs"] = [str(FIXTURE)]
    sp["teacher"]["model"]["dim"] = 16
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(sp))
    return path


def test_time_to_reads_the_first_crossing() -> None:
    pts = [(1, 2.0, 0.1), (2, 4.5, 0.3), (3, 7.0, 0.25), (4, 9.0, 0.4)]
    assert time_to(pts, 0.3) == (2, 4.5)
    assert time_to(pts, 0.35) == (4, 9.0)
    assert time_to(pts, 0.5) == (None, None)


def test_curve_sums_epoch_seconds(tmp_path: Path) -> None:
    log = [
        {"event": "epoch", "epoch": 1, "seconds": 1.5},
        {"event": "valid", "epoch": 1, "mrr": 0.1},
        {"event": "epoch", "epoch": 2, "seconds": 2.0},
        {"event": "valid", "epoch": 2, "mrr": 0.2},
    ]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    assert curve(tmp_path) == [(1, 1.5, 0.1), (2, 3.5, 0.2)]


@pytest.mark.slow  # trains real runs end to end
def test_benchmark_rows_and_files(spec: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    doc = run_multisource(
        spec=spec,
        targets=["zh"],
        methods=["all"],
        epochs=2,
        teacher_epochs=2,
        work=work,
        out=out,
    )
    methods = [r["method"] for r in doc["rows"]]
    assert methods == [
        "scratch",
        "all",
    ]  # scratch always runs: time-to-quality is measured against it
    for r in doc["rows"]:
        assert (r["pair"], r["target"]) == (str(FIXTURE), "zh")
        for k in ("mrr", "hits1", "hits3", "hits10"):
            assert 0 <= r[k] <= 100
        assert len(r["curve"]) == 2  # validation after every epoch
        assert "seconds_to_scratch_best" in r
    scratch = doc["rows"][0]
    assert scratch["epochs_to_scratch_best"] is not None and scratch["time_ratio"] == 1.0
    assert set(doc["goals"]) == {f"{FIXTURE}:zh"}
    goal = doc["goals"][f"{FIXTURE}:zh"]
    assert goal["scratch_epochs"] == scratch["epochs_to_scratch_best"]
    assert goal["epochs"] == doc["rows"][1]["epochs_to_scratch_best"]
    (reuse,) = doc["teacher_reuse"]
    assert reuse["targets_served"] == ["zh"]
    assert reuse["teacher_train_s"] > 0
    # the prediction level reads the teacher's top-k, cached once for the target: its seconds start the clock
    all_row = doc["rows"][1]
    cache = work / FIXTURE.name / "zh-joint_top128.safetensors"
    info = json.loads(cache.with_suffix(".json").read_text())
    assert cache.is_file() and all_row["cache_s"] == info["seconds"] > 0
    assert all_row["curve"][0][1] > info["seconds"] and scratch["cache_s"] is None
    # the teacher ranked on the target's own test split, and the share of it each student keeps
    (on_zh,) = doc["teacher_on_target"]
    assert (on_zh["pair"], on_zh["target"]) == (str(FIXTURE), "zh") and 0 < on_zh["mrr"] <= 100
    assert all_row["teacher_retention"] == pytest.approx(all_row["mrr"] / on_zh["mrr"])
    saved = json.loads((out / "multisource.json").read_text())
    assert saved["rows"][1]["method"] == "all"
    md = (out / "multisource.md").read_text()
    cells = [
        [c.strip() for c in line.split("|")] for line in md.splitlines() if line.startswith("|")
    ]
    assert [str(FIXTURE), "zh", "all"] in [c[1:4] for c in cells]
    # with the teacher, 2 epochs reach scratch's best on the fixture
    assert goal["epochs"] is not None
    assert f"(epoch {goal['epochs']} against scratch's {goal['scratch_epochs']}; " in md
    assert (out / "multisource.png").stat().st_size > 0
    # a second call reuses every finished run: the teacher is trained once
    teacher_ckpt = work / FIXTURE.name / "teacher" / "best.safetensors"
    before = teacher_ckpt.stat().st_mtime_ns
    again = run_multisource(
        spec=spec, targets=["zh"], methods=["all"], epochs=2, teacher_epochs=2, work=work, out=out
    )
    assert teacher_ckpt.stat().st_mtime_ns == before
    assert json.loads(cache.with_suffix(".json").read_text()) == info  # the cache is reused too
    assert [r["mrr"] for r in again["rows"]] == [r["mrr"] for r in doc["rows"]]
    # another pair's results already in the file (one written before 'sources' existed) are kept
    other = json.loads((out / "multisource.json").read_text())
    del other["sources"]
    for name in ("teachers", "teacher_on_target", "rows"):
        for entry in other[name]:
            entry["pair"] = "dbp15k_ja_en"
    (out / "multisource.json").write_text(json.dumps(other))
    merged = run_multisource(
        spec=spec, targets=["zh"], methods=["all"], epochs=2, teacher_epochs=2, work=work, out=out
    )
    assert [r["pair"] for r in merged["rows"]] == ["dbp15k_ja_en"] * 2 + [str(FIXTURE)] * 2
    assert set(merged["goals"]) == {f"{FIXTURE}:zh", "dbp15k_ja_en:zh"}
    assert [u["pair"] for u in merged["teacher_reuse"]] == ["dbp15k_ja_en", str(FIXTURE)]
    assert merged["sources"]["dbp15k_ja_en"]["command"] == other["command"]
    assert "- dbp15k_ja_en: `" in (out / "multisource.md").read_text()
    # --finished-only: tabulates the finished runs, trains nothing (here: the network level never ran)
    listed = sorted(p.name for p in (work / FIXTURE.name).iterdir())
    only = run_multisource(
        spec=spec, targets=["zh"], epochs=2, teacher_epochs=2, work=work, out=out, train=False
    )
    assert [r["method"] for r in only["rows"] if r["pair"] == str(FIXTURE)] == ["scratch", "all"]
    assert sorted(p.name for p in (work / FIXTURE.name).iterdir()) == listed


def test_unknown_method_and_target(spec: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown method"):
        run_multisource(spec=spec, methods=["bogus"], work=tmp_path, out=tmp_path)
    with pytest.raises(ConfigError, match="none of the targets"):
        run_multisource(spec=spec, targets=["xx"], work=tmp_path, out=tmp_path)


def test_a_method_reading_an_undeclared_teacher(spec: Path, tmp_path: Path) -> None:
    sp = yaml.safe_load(spec.read_text())
    sp["methods"]["prediction"]["objective"][0]["teacher"] = "nobody"
    spec.write_text(yaml.safe_dump(sp))
    with pytest.raises(ConfigError, match="uses teacher 'nobody'"):
        run_multisource(
            spec=spec,
            targets=["zh"],
            methods=["prediction"],
            epochs=1,
            teacher_epochs=1,
            work=tmp_path,
            out=tmp_path,
        )
