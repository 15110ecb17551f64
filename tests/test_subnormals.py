"""Subnormal floats flushed to zero: on every thread of the pool when set first, by the ``kgdistill`` command unless
asked not to, and never for ``--help`` (which answers without loading PyTorch)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import kgdistill.cli as cli_module
import kgdistill.runs as runs_module

_SHARE = r"""
import json, sys, torch
torch.set_num_threads(2)
from kgdistill.runs import flush_denormals, flushes_denormals
if sys.argv[1] == "before":
    flush_denormals()
x = torch.full((1 << 22,), 1e-39)
y = x * 1.0  # a parallel product: the pool of intra-op threads exists from here on
if sys.argv[1] == "after":
    flush_denormals()
share = float(((x * 1.0) == 0).float().mean())
print(json.dumps({"share": share, "main": flushes_denormals()}))
"""


def _share(when: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _SHARE, when], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_flushed_first_every_thread_flushes_and_later_only_the_calling_one() -> None:
    assert _share("never") == {"share": 0.0, "main": False}
    assert _share("before") == {"share": 1.0, "main": True}
    later = _share("after")
    assert later["main"] and 0.0 < later["share"] < 1.0  # the main thread's part only


@pytest.mark.parametrize(
    ("args", "env", "flushes"),
    [
        (["train", "c.yaml"], {}, True),
        (["benchmark", "temporal_kd", "--finished-only"], {}, True),
        (["train", "c.yaml"], {"KGDISTILL_KEEP_SUBNORMALS": "1"}, False),
        ([], {}, False),
        (["--help"], {}, False),
        (["train", "--help"], {}, False),
        (["--version"], {}, False),
    ],
)
def test_main_flushes_before_the_command_runs(
    args: list[str], env: dict[str, str], flushes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runs_module, "flush_denormals", lambda: calls.append("flush") or True)
    monkeypatch.setattr(cli_module, "cli", lambda **_: calls.append("cli"))
    monkeypatch.setattr(sys, "argv", ["kgdistill", *args])
    monkeypatch.delenv("KGDISTILL_KEEP_SUBNORMALS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cli_module.main()
    assert calls == (["flush", "cli"] if flushes else ["cli"])


def test_machine_info_says_whether_subnormals_are_flushed() -> None:
    assert runs_module.machine_info()["flush_denormal"] is runs_module.flushes_denormals()
