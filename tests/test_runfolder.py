"""Run folders: locked while in use, never overwritten without --overwrite, stale temporaries removed, and a run
that fails before its first checkpoint leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kgdistill.cli import cli
from kgdistill.errors import KGDistillError
from kgdistill.runfolder import LOCK_NAME, claim

FIXTURES = Path(__file__).parent / "fixtures"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """One epoch of DistMult-8 on the FB15k-237 fixture (a couple of seconds)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"name": str(FIXTURES / "fb15k237-mini")},
                "model": {"name": "distmult", "dim": 8},
                "stages": [{"epochs": 1}],
                "train": {"optimizer": "adam", "lr": 0.01, "progress": False},
            }
        )
    )
    return path


def test_a_second_claim_on_the_same_folder_fails_at_once(tmp_path: Path) -> None:
    with (
        claim(tmp_path / "run", fresh=True),
        pytest.raises(KGDistillError, match=r"in use by another process \(pid \d+\)"),
        claim(tmp_path / "run", fresh=False),
    ):
        pass
    with claim(tmp_path / "run", fresh=False):  # released on exit
        pass


def test_another_process_holding_the_folder_is_named(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = (
        "import sys, time\n"
        "from kgdistill.runfolder import claim\n"
        f"with claim({str(run)!r}, fresh=True):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(KGDistillError, match=rf"pid {holder.pid}\b"), claim(run, fresh=False):
            pass
    finally:
        holder.kill()
        holder.wait()
    # a killed owner leaves no stale lock
    deadline = time.monotonic() + 10
    while True:
        try:
            with claim(run, fresh=False):
                break
        except KGDistillError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_a_folder_holding_a_run_is_not_overwritten_without_the_flag(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    with (
        pytest.raises(KGDistillError, match=r"already holds a finished run.*--overwrite"),
        claim(run, fresh=True),
    ):
        pass
    assert (run / "metrics.json").is_file()  # untouched
    with claim(run, fresh=True, overwrite=True):
        assert not (run / "metrics.json").exists()
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files go


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.safetensors").write_bytes(b"x")
    stale = run / ".last.safetensors.abc123.tmp"
    stale.write_bytes(b"half a file")
    with claim(run, fresh=False):
        assert not stale.exists()
        assert (run / "last.safetensors").exists()


def test_a_failed_start_removes_the_folder_it_created(tmp_path: Path) -> None:
    run = tmp_path / "new"
    with pytest.raises(RuntimeError), claim(run, fresh=True):
        (run / "config.yaml").write_text("x")
        raise RuntimeError("teacher not found")
    assert not run.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), claim(existing, fresh=True):
        (existing / "config.yaml").write_text("x")
        raise RuntimeError("boom")
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_cli_refuses_a_finished_run_and_overwrites_with_the_flag(
    tiny_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, text = _invoke("train", str(tiny_config), "--out", str(out))
    assert code == 0, text
    first = (out / "metrics.json").read_text()
    code, text = _invoke("train", str(tiny_config), "--out", str(out))
    assert code == 2 and "already holds a finished run" in text and "--overwrite" in text, text
    assert (out / "metrics.json").read_text() == first
    code, text = _invoke("train", str(tiny_config), "--out", str(out), "--overwrite")
    assert code == 0, text
    assert (out / LOCK_NAME).is_file() and (out / "metrics.json").is_file()


def test_cli_failure_before_the_first_step_leaves_no_folder(
    tiny_config: Path, tmp_path: Path
) -> None:
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["teachers"] = {"t": {"name": "checkpoint", "path": str(tmp_path / "no-such-run")}}
    cfg["stages"][0]["objective"] = [{"loss": "supervised_ce"}, {"loss": "kd_kl", "teacher": "t"}]
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "student"
    code, text = _invoke("distill", str(path), "--out", str(out))
    assert code == 2 and "no-such-run" in text, text
    assert "config key 'teachers.t.path'" in text and "kgdistill train" in text, text
    assert not out.exists()
