"""``kgdistill serve`` as a command: unservable runs and unsafe binds are one error and exit 2 before anything
starts; the real command in a subprocess serves, checks its API key and shuts down gracefully on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from kgdistill.cli import cli

from .conftest import call, free_port


def invoke(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(cli, ["serve", *args])
    return out.exit_code, out.output


def test_unservable_runs_are_one_error_and_exit_2(temporal_run: Path, tmp_path: Path) -> None:
    code, out = invoke(str(tmp_path / "nowhere"))
    assert code == 2 and "no such run folder" in out
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("model: {name: distmult}\n")
    code, out = invoke(str(tmp_path / "half"))
    assert code == 2 and "incomplete run folder" in out and "'half'" in out
    shutil.copytree(temporal_run, tmp_path / "unfinished")
    (tmp_path / "unfinished" / "best.safetensors").unlink()
    code, out = invoke(f"u={tmp_path / 'unfinished'}")
    assert code == 2 and "unfinished run" in out and "'u'" in out
    # a checkpoint of another format version
    old = tmp_path / "old"
    shutil.copytree(temporal_run, old)
    with safe_open(str(old / "best.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    doc = json.loads(meta["kgdistill"])
    meta["kgdistill"] = json.dumps({**doc, "format": 99})
    save_file(tensors, str(old / "best.safetensors"), metadata=meta)
    code, out = invoke(str(temporal_run), str(old))
    assert code == 2 and "format 99 is not supported" in out
    code, out = invoke(str(temporal_run), f"yago={temporal_run}")
    assert code == 2 and "two runs are named 'yago'" in out


def test_non_loopback_needs_a_key(temporal_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = invoke(str(temporal_run), "--host", "0.0.0.0")
    assert code == 2 and "--api-key-env" in out and "--insecure" in out
    monkeypatch.delenv("KGDISTILL_TEST_KEY", raising=False)
    code, out = invoke(str(temporal_run), "--api-key-env", "KGDISTILL_TEST_KEY")
    assert code == 2 and "KGDISTILL_TEST_KEY" in out and "not set" in out


def _serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "kgdistill", "serve", *args, "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the server did not become ready"
        try:
            if call(url + "/ready")[0] == 200:
                return proc, url
        except OSError:
            pass
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM: uvicorn finishes what is in flight, runs the shutdown (the batchers drain), then re-raises the
    signal (exit status -15)."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err, err
    return err


@pytest.mark.slow
def test_the_command_serves_with_a_key_and_stops_gracefully(temporal_run: Path) -> None:
    env = {"KGDISTILL_TEST_KEY": "k3y", "OMP_NUM_THREADS": "1"}
    proc, url = _serve([f"yago={temporal_run}", "--api-key-env", "KGDISTILL_TEST_KEY"], env)
    try:
        assert call(url + "/v1/runs")[0] == 401
        body = {"head": "<Xavi_Moro>", "relation": "wasBornIn", "time": "1990", "k": 3}
        status, out = call(url + "/v1/runs/yago/topk", body, headers={"X-API-Key": "k3y"})
        assert status == 200 and len(out["answers"]) == 3
    finally:
        _stop(proc)


@pytest.mark.slow
def test_two_worker_processes(temporal_run: Path, static_run: Path) -> None:
    proc, url = _serve(
        [str(temporal_run), str(static_run), "--workers", "2"], {"OMP_NUM_THREADS": "1"}
    )
    try:
        names = [r["name"] for r in call(url + "/v1/runs")[1]]
        assert names == [temporal_run.name, static_run.name]
        body = {"head_id": 1, "relation_id": 1, "k": 2}
        assert all(call(f"{url}/v1/runs/{static_run.name}/topk", body)[0] == 200 for _ in range(8))
    finally:
        _stop(proc)
