"""Fixtures of the KG <-> LM tests: the FB15k-237 subset."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgdistill.data import KG, build_kg, read_static_names

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def fb_mini() -> KG:
    """The real FB15k-237 subset (``tests/fixtures/fb15k237-mini``)."""
    return build_kg(read_static_names(FIXTURES / "fb15k237-mini"))
