"""The package's import structure: every registry is complete whatever is imported first, no module import cycle
exists (lazy imports inside functions included), and the file I/O module is a leaf."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "kgdistill"

#: Every built-in of every registry. Adding one means adding it here: the fresh-interpreter test then proves it
#: registers on any import path.
FULL: dict[str, set[str]] = {
    "kgdistill.losses:LOSSES": {
        "supervised_ce",
        "negative_sampling",
        "margin_ranking",
        "n3",
        "l2",
        "lambda3",
        "kd_kl",
        "huber",
        "mse",
        "fitnet",
        "rkd",
        "alignment",
        "feature",
        "network",
        "info_nce",
        "generation",
        "reconstruction",
        "contextualization",
        "soft_labels",
    },
    "kgdistill.models:MODELS": {
        "transe",
        "distmult",
        "complex",
        "rotate",
        "ttranse",
        "ta_distmult",
        "ta_transe",
        "hyte",
        "tntcomplex",
        "timeplex",
        "llm_scorer",
        "bi_encoder",
        "cross_encoder",
        "generative",
    },
    "kgdistill.distill.teachers:TEACHERS": {"checkpoint", "cache"},
    "kgdistill.llm.encoders:ENCODERS": {"sentence_transformers", "hf", "openai"},
    "kgdistill.llm.generators:GENERATORS": {"hf", "openai"},
    "kgdistill.data.datasets:DATASETS": {
        "yago11k",
        "wikidata12k",
        "icews14",
        "icews14_forecasting",
        "fb15k237",
        "wn18rr",
        "fb15k237n",
    },
}


@pytest.mark.parametrize("where", sorted(FULL))
def test_registry_is_complete_in_a_fresh_interpreter(where: str) -> None:
    """Importing only the registry's own module (nothing else first) gives every built-in."""
    module, name = where.split(":")
    code = f"import json; from {module} import {name} as R; print(json.dumps(R.names()))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert set(json.loads(out.stdout.strip().splitlines()[-1])) == FULL[where]


def test_the_objective_builds_kd_terms_from_plain_library_code() -> None:
    """``Objective.build`` with a KD term works without importing kgdistill.distill first."""
    code = (
        "from kgdistill.objective import Objective\n"
        "o = Objective.build([{'loss': 'kd_kl', 'teacher': 't'}, {'loss': 'feature', 'teacher': 't'}],"
        " teachers={'t': None})\n"
        "print(o)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "kd_kl[t]" in out.stdout and "feature[t]" in out.stdout


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """kgdistill modules imported anywhere in ``path`` (top level and inside functions)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name in modules and name != me:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    files = sorted(SRC.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def test_no_import_cycle_lazy_imports_included() -> None:
    """A module importing a package's ``__init__`` depends on everything that ``__init__`` imports; the parent
    packages a dotted import runs implicitly are not counted (they only re-export)."""
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n) :], n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("leaf", ["kgdistill.io", "kgdistill.errors", "kgdistill.types"])
def test_leaf_modules_import_nothing_of_the_project_but_errors(leaf: str) -> None:
    graph = _graph()
    assert graph[leaf] <= {"kgdistill.errors"}, f"{leaf} imports {sorted(graph[leaf])}"


def test_benchmark_drivers_are_not_in_the_package() -> None:
    """Benchmark drivers (paper-specific goals, defaults pointing into the repository) live in benchmarks/."""
    assert not (SRC / "bench").exists()
    assert not (SRC / "configs" / "bench").exists()
    # the one exception: ``kgdistill benchmark`` finds a checkout's benchmarks/ folder and runs a script of it by
    # name; it holds no driver, goal or result of its own and imports nothing from there
    launcher = SRC / "bench_cli.py"
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p != launcher and "benchmarks/" in p.read_text(encoding="utf-8")
    ]
    assert offenders == [], f"package modules pointing into benchmarks/: {offenders}"
    imports = [ln for ln in launcher.read_text(encoding="utf-8").splitlines() if "import _" in ln]
    assert imports == [], imports


def test_help_and_the_package_do_not_load_torch() -> None:
    code = (
        "import sys, kgdistill, kgdistill.cli\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "names = kgdistill.LOSSES.names()\n"  # a registry reached through the package is complete
        "assert 'kd_kl' in names and 'feature' in names, names\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    """A lazy public name equal to a submodule's would flip from the object to the module as soon as anything
    imports that submodule (``from kgdistill import evaluate`` once gave the module after ``import kgdistill.api``).
    """
    import kgdistill

    submodules = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if p.is_dir()}
    assert not submodules & set(kgdistill._LAZY)
    code = (
        "import kgdistill, kgdistill.api, kgdistill.run, kgdistill.predict\n"
        "import kgdistill.data, kgdistill.models, kgdistill.evaluate\n"
        "import types\n"
        "bad = [n for n in kgdistill._LAZY if isinstance(getattr(kgdistill, n), types.ModuleType)]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
