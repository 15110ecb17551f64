"""The README's quick start and CI run the same test command."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text().splitlines()
    ci = [ln for ln in (REPO / ".ci/run").read_text().splitlines() if ln and ln[0] not in "#"]
    test_cmd = next(ln for ln in readme if ln.startswith("pip install") and "pytest" in ln)
    assert ci[-1] == test_cmd
