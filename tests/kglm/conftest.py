"""Fixtures of the KG <-> LM tests: the FB15k-237 subset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kgdistill.data import KG, build_kg, read_static_names

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def fb_mini() -> KG:
    """The real FB15k-237 subset (``tests/fixtures/fb15k237-mini``)."""
    return build_kg(read_static_names(FIXTURES / "fb15k237-mini"))


def _tiny_rounds_spec(encoder: Path | None = None) -> dict:
    """The kglm drivers' spec with one tiny profile: a DistMult-16 for 2 epochs and (``encoder``) a tiny local
    encoder; the ceiling benchmark reads only its KGE."""
    return {
        "hold_out": 0.2,
        "profiles": {
            "tiny": {
                "kge": {
                    "model": {"name": "distmult", "dim": 16, "init_scale": 0.1},
                    "stages": [{"epochs": 2}],
                    "train": {
                        "optimizer": "adam",
                        "lr": 0.02,
                        "batch_size": 500,
                        "progress": False,
                    },
                },
                "lm": {
                    "encoder": str(encoder) if encoder else None,
                    "max_length": 24,
                    "num_labels": 6,
                    "test_entities": 0.2,
                    "max_examples": 150,
                    "epochs": 1,
                    "batch_size": 64,
                    "lr": 1e-3,
                    "head_lr": 1e-2,
                },
                "fitnet_weight": 0.5,
                "k": 3,
                "max_queries": 150,
                "top": 20,
                "soft_weight": 1.0,
                "max_rounds": 2,
            }
        },
    }


@pytest.fixture()
def tiny_rounds_spec() -> Callable[[Path | None], dict]:
    """Builds the kglm drivers' tiny spec (see :func:`_tiny_rounds_spec`)."""
    return _tiny_rounds_spec
