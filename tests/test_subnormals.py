"""Subnormal floats flushed to zero: on every thread of the pool when set first, unless asked not to, by the
``kgdistill`` command and its serving workers, never for ``--help`` (which answers without loading PyTorch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import kgdistill.cli as cli_module
import kgdistill.runs as runs_module

_SHARE = r"""
import json, sys, torch
torch.set_num_threads(2)
from kgdistill.runs import flush_denormals, flushes_denormals
took = None
if sys.argv[1] == "before":
    took = flush_denormals()
x = torch.full((1 << 22,), 1e-39)
y = x * 1.0  # a parallel product: the pool of intra-op threads exists from here on
if sys.argv[1] == "after":
    flush_denormals()
share = float(((x * 1.0) == 0).float().mean())
print(json.dumps({"share": share, "main": flushes_denormals(), "took": took}))
"""


def _share(when: str, keep: str = "") -> dict[str, Any]:
    env = {**os.environ, "KGDISTILL_KEEP_SUBNORMALS": keep}
    out = subprocess.run(
        [sys.executable, "-c", _SHARE, when], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_flushed_first_every_thread_flushes_and_later_only_the_calling_one() -> None:
    assert _share("never") == {"share": 0.0, "main": False, "took": None}
    assert _share("before") == {"share": 1.0, "main": True, "took": True}
    later = _share("after")
    assert later["main"] and 0.0 < later["share"] < 1.0  # the main thread's part only


@pytest.mark.parametrize("keep", ["1", "true"])
def test_asked_to_keep_subnormals_nothing_is_flushed(keep: str) -> None:
    assert _share("before", keep) == {"share": 0.0, "main": False, "took": False}


@pytest.mark.parametrize(
    ("args", "flushes"),
    [
        (["train", "c.yaml"], True),
        (["benchmark", "temporal_kd", "--finished-only"], True),
        ([], False),
        (["--help"], False),
        (["train", "--help"], False),
        (["--version"], False),
    ],
)
def test_main_flushes_before_the_command_runs(
    args: list[str], flushes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runs_module, "flush_denormals", lambda: calls.append("flush") or True)
    monkeypatch.setattr(cli_module, "cli", lambda **_: calls.append("cli"))
    monkeypatch.setattr(sys, "argv", ["kgdistill", *args])
    cli_module.main()
    assert calls == (["flush", "cli"] if flushes else ["cli"])


def test_machine_info_says_whether_subnormals_are_flushed() -> None:
    assert runs_module.machine_info()["flush_denormal"] is runs_module.flushes_denormals()


def test_a_serving_worker_flushes_before_it_loads_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kgdistill serve --workers N`` starts fresh processes that never pass through :func:`kgdistill.cli.main`."""
    from kgdistill.serve import app as app_module
    from kgdistill.serve import runs as serve_runs

    calls: list[str] = []

    class Stop(Exception):
        pass

    def load_runs(*_: Any, **__: Any) -> None:
        calls.append("load")
        raise Stop

    monkeypatch.setattr(runs_module, "flush_denormals", lambda: calls.append("flush") or True)
    monkeypatch.setattr(serve_runs, "load_runs", load_runs)
    monkeypatch.setenv(app_module.ENV_CONFIG, json.dumps({"runs": [["m", "runs/m"]]}))
    with pytest.raises(Stop):
        app_module.app_from_env()
    assert calls == ["flush", "load"]
