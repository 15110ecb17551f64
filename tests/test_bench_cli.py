"""``kgdistill benchmark``: finding the benchmarks folder, listing it, resolving names, running a script."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kgdistill.bench_cli import ENV, benchmarks_dir, list_benchmarks, resolve
from kgdistill.cli import cli
from kgdistill.errors import KGDistillError

REPO = Path(__file__).resolve().parents[1]

# a script that imports a helper of its folder (only found with the folder on sys.path), records its command line
# and exits with the status its first argument names
SCRIPT = '''"""Records its arguments.

Second paragraph, not listed."""
import json
import sys

from _recorder import OUT

OUT.write_text(json.dumps(sys.argv[1:]))
sys.exit(int(sys.argv[1]))
'''


@pytest.fixture(autouse=True)
def _forget_helpers() -> Iterator[None]:
    """Drop the helper modules a run imported (one test's ``_recorder`` must not answer for another's)."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if not getattr(sys.modules[name], "__file__", None) or "benchmarks" in str(
            sys.modules[name].__file__
        ):
            sys.modules.pop(name)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["benchmark", *args])
    return result.exit_code, result.output


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A benchmarks folder with one recording script, a helper module and a private script."""
    bench = tmp_path / "checkout" / "benchmarks"
    bench.mkdir(parents=True)
    out = tmp_path / "argv.json"
    (bench / "_common.py").write_text('"""The marker of a benchmarks folder."""\n')
    (bench / "_recorder.py").write_text(f"from pathlib import Path\nOUT = Path({str(out)!r})\n")
    (bench / "_tables.py").write_text('"""A helper, not a benchmark."""\n')
    (bench / "echo_args.py").write_text(SCRIPT)
    (bench / "no_doc.py").write_text("x = 1\n")
    return bench


def test_lists_the_repository_benchmarks() -> None:
    found = list_benchmarks(REPO / "benchmarks")
    assert {"temporal_kd", "kglm_ceiling", "eval_speed"} <= set(found)
    assert not any(n.startswith("_") for n in found)
    assert found["temporal_kd"].startswith("The temporal KD benchmark")
    code, out = invoke("--dir", str(REPO / "benchmarks"))
    assert code == 0
    assert "temporal_kd" in out and "kglm_ceiling" in out and "_common" not in out


def test_summaries_are_the_first_paragraph(folder: Path) -> None:
    found = list_benchmarks(folder)
    assert found == {"echo_args": "Records its arguments.", "no_doc": ""}


def test_finds_the_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    deep = folder.parent / "src" / "deeper"
    deep.mkdir(parents=True)
    assert benchmarks_dir(cwd=deep) == folder  # benchmarks/ of a parent of the working directory
    assert benchmarks_dir(str(folder)) == folder
    monkeypatch.setenv(ENV, str(folder))
    assert benchmarks_dir(cwd=Path("/")) == folder
    # outside any checkout: the one this package is installed from (an editable install)
    monkeypatch.delenv(ENV)
    assert benchmarks_dir(cwd=Path("/")) == REPO / "benchmarks"


@pytest.mark.parametrize("source", ["option", "env"])
def test_a_folder_without_benchmarks_is_refused(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if source == "env":
        monkeypatch.setenv(ENV, str(tmp_path))
        code, out = invoke()
    else:
        code, out = invoke("--dir", str(tmp_path))
    assert code == 2
    assert (
        f"{'--dir' if source == 'option' else '$' + ENV} {tmp_path}: not a benchmarks folder" in out
    )


@pytest.mark.parametrize("name", ["echo_args", "echo-args", "echo_args.py"])
def test_names_resolve(folder: Path, name: str) -> None:
    assert resolve(folder, name) == folder / "echo_args.py"


@pytest.mark.parametrize("name", ["echo_argz", "_common", "tables"])
def test_unknown_names_are_refused(folder: Path, name: str) -> None:
    with pytest.raises(KGDistillError, match=f"no benchmark '{name}'"):
        resolve(folder, name)
    code, out = invoke("--dir", str(folder), name)
    assert code == 2 and f"error: no benchmark '{name}'" in out


def test_suggests_close_names(folder: Path) -> None:
    with pytest.raises(KGDistillError, match="did you mean echo_args"):
        resolve(folder, "echo-argz")


@pytest.mark.parametrize("status", [0, 3])
def test_runs_the_script_with_its_arguments(folder: Path, status: int) -> None:
    path, argv = sys.path[:], sys.argv[:]
    # options after NAME are the script's, --help and --dir included
    code, _ = invoke("--dir", str(folder), "echo-args", str(status), "--dir", "x", "--help")
    assert code == status
    assert json.loads((folder.parents[1] / "argv.json").read_text()) == [
        str(status),
        "--dir",
        "x",
        "--help",
    ]
    assert sys.path == path and sys.argv == argv


def test_a_real_benchmark_answers_help() -> None:
    code, out = invoke("temporal-kd", "--help")
    assert code == 0
    assert "Usage: temporal_kd.py" in out and "--spec" in out


@pytest.mark.parametrize(
    ("flags", "level"), [({"quiet": True}, "WARNING"), ({"verbose": True}, "DEBUG")]
)
def test_a_benchmark_sets_its_log_level_after_kgdistill_did(
    flags: dict[str, bool], level: str
) -> None:
    """``kgdistill`` configures logging before the script runs; the script's -q / -v still take effect."""
    import logging

    from _common import setup_logging

    root = logging.getLogger()
    before = root.level
    handler = logging.StreamHandler()
    root.addHandler(handler)  # as kgdistill's basicConfig leaves it: a handler already there
    try:
        root.setLevel(logging.INFO)
        setup_logging(**flags)
        assert logging.getLevelName(root.level) == level
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


@pytest.mark.parametrize(
    ("script", "recorded"),
    [
        # as the launcher runs it, by its absolute path
        (str(REPO / "benchmarks" / "temporal_kd.py"), "benchmarks/temporal_kd.py"),
        ("benchmarks/temporal_kd.py", "benchmarks/temporal_kd.py"),
        ("/elsewhere/mine.py", "/elsewhere/mine.py"),  # not a script of this checkout: as given
    ],
)
def test_the_recorded_command_names_a_script_from_the_checkout(
    script: str, recorded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Result files record the command: a script of this checkout by its path from the root, however it was
    started (``kgdistill benchmark`` passes an absolute path), so no machine's folders reach them."""
    from _common import run_command

    monkeypatch.setattr(sys, "argv", [script, "--seeds", "0"])
    assert run_command() == f"python {recorded} --seeds 0"
