"""``kgdistill benchmark [NAME [ARGS]...]``: the benchmark scripts of a source checkout (``benchmarks/*.py``) by name.

The benchmarks are scripts beside the package, not part of it: they read the full datasets, write
``benchmarks/results/`` and share helpers (``benchmarks/_common.py``). This command finds that folder, lists its
benchmarks with the first paragraph of each docstring, and runs one with the remaining arguments exactly as
``python benchmarks/NAME.py ARGS...`` would (in this process; its exit status is the command's). ``temporal-kd``
and ``temporal_kd`` name the same script. Importing this module loads only click.
"""

from __future__ import annotations

import ast
import difflib
import os
import runpy
import sys
from pathlib import Path

import click

from kgdistill.clickutil import friendly
from kgdistill.errors import KGDistillError

__all__ = ["benchmark", "benchmarks_dir", "list_benchmarks", "resolve"]

#: a folder is a benchmarks folder when it holds this helper module
MARKER = "_common.py"
ENV = "KGDISTILL_BENCHMARKS"


def benchmarks_dir(given: str | None = None, cwd: Path | None = None) -> Path:
    """The benchmarks folder: ``given`` (``--dir``), else ``$KGDISTILL_BENCHMARKS``, else ``benchmarks/`` of the
    working directory or one of its parents, else the source checkout this package is installed from (an
    editable install).

    Raises:
        KGDistillError: ``given`` / the variable names no benchmarks folder, or none was found (the message says
            where it looked).
    """
    for source, value in (("--dir", given), (f"${ENV}", os.environ.get(ENV))):
        if value:
            folder = Path(value)
            if not (folder / MARKER).is_file():
                raise KGDistillError(
                    f"{source} {value}: not a benchmarks folder (no {MARKER} in it)"
                )
            return folder
    here = (cwd or Path.cwd()).resolve()
    package = Path(__file__).resolve().parents[2]
    looked = [p / "benchmarks" for p in (here, *here.parents)] + [package / "benchmarks"]
    for folder in looked:
        if (folder / MARKER).is_file():
            return folder
    raise KGDistillError(
        f"no benchmarks folder (one holding {MARKER}) in {here} or its parents, nor beside the installed package "
        f"({package}); run from a kgdistill source checkout, or pass --dir / set ${ENV}"
    )


def list_benchmarks(folder: Path) -> dict[str, str]:
    """Benchmark name -> the first paragraph of its docstring on one line (``""`` without one), for every ``NAME.py`` of
    ``folder`` whose name does not start with ``_``, sorted by name. The scripts are parsed, not imported."""
    out: dict[str, str] = {}
    for path in _scripts(folder):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        except (SyntaxError, UnicodeDecodeError, OSError):
            doc = "(unreadable)"
        out[path.stem] = _summary(doc)
    return out


def _scripts(folder: Path) -> list[Path]:
    """The benchmark scripts of ``folder``: its ``*.py`` not starting with ``_`` (helpers), sorted by name."""
    return [p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]


def _summary(doc: str, width: int = 100) -> str:
    """A docstring's first paragraph on one line, cut at a word before ``width`` characters (`` ...`` added)."""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    if len(text) <= width:
        return text
    return text[: text.rfind(" ", 0, width - 4)] + " ..."


def resolve(folder: Path, name: str) -> Path:
    """The script of benchmark ``name`` in ``folder`` (hyphens read as underscores; ``.py`` optional).

    Raises:
        KGDistillError: no such benchmark (with the closest names and how to list them).
    """
    stem = name.removesuffix(".py").replace("-", "_")
    names = [p.stem for p in _scripts(folder)]
    if stem in names:
        return folder / f"{stem}.py"
    close = difflib.get_close_matches(stem, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise KGDistillError(
        f"no benchmark '{name}' in {folder}{hint} (kgdistill benchmark lists the {len(names)} there)"
    )


def _listing(folder: Path) -> str:
    """The listing ``kgdistill benchmark`` prints: one line per benchmark."""
    found = list_benchmarks(folder)
    width = max((len(n) for n in found), default=0)
    lines = [f"benchmarks in {folder} (kgdistill benchmark NAME --help for one's options):"]
    lines += [f"  {n.ljust(width)}  {d}" for n, d in found.items()]
    return "\n".join(lines)


def run_script(script: Path, args: list[str]) -> None:
    """Run ``script`` as ``__main__`` with ``args`` as its command line, its folder first on ``sys.path`` (where
    its helpers are imported from); ``sys.argv`` and ``sys.path`` are restored afterwards. A ``SystemExit`` of the
    script (its exit status) propagates."""
    argv, path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv[:], sys.path[:] = argv, path


@click.command(
    name="benchmark",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--dir",
    "folder",
    default=None,
    type=click.Path(file_okay=False),
    help=f"The benchmarks folder (default: ${ENV}, else benchmarks/ of the working directory or a parent, "
    "else of the source checkout kgdistill is installed from).",
)
@click.option(
    "--list", "show", is_flag=True, help="List the benchmarks and exit (as without NAME)."
)
@click.argument("name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@friendly("a benchmark resumes its finished runs: run the same command again")
def benchmark(folder: str | None, show: bool, name: str | None, args: tuple[str, ...]) -> None:
    """Run the benchmark NAME of a source checkout with ARGS, as python benchmarks/NAME.py ARGS would; without
    NAME, list the benchmarks. Example: kgdistill benchmark temporal-kd --spec
    benchmarks/specs/static-kd-cpu.yaml --students complex-32 --methods bkd --seeds 0."""
    where = benchmarks_dir(folder)
    if show or name is None:
        click.echo(_listing(where))
        return
    run_script(resolve(where, name), list(args))
