"""The listing verbs answer from plain tables (kgdistill.catalog) without importing PyTorch, and those tables say
what the registries hold."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kgdistill.catalog import DATASET_INFO, LINKED_INFO, MODEL_INFO


@pytest.mark.parametrize("verb", ["datasets", "models"])
def test_listing_verbs_do_not_import_torch(verb: str) -> None:
    code = (
        "import sys\n"
        "from kgdistill.cli import cli\n"
        f"cli(['-q', '{verb}'], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    names = DATASET_INFO if verb == "datasets" else MODEL_INFO
    assert all(name in out.stdout for name in names)


def test_the_dataset_registry_is_the_catalog() -> None:
    from kgdistill.data import DATASETS

    assert DATASETS.names() == sorted(DATASET_INFO)
    for name, info in DATASET_INFO.items():
        entry = DATASETS.get(name)
        got = (entry.folder, entry.kind, entry.description, entry.bundled)
        assert got == (info.folder, info.kind, info.description, info.bundled)


def test_the_linked_collections_are_the_catalog() -> None:
    from kgdistill.multi import LINKED

    assert {k: (v.folder, v.description) for k, v in LINKED.items()} == {
        k: (v.folder, v.description) for k, v in LINKED_INFO.items()
    }


def test_the_model_registry_matches_the_catalog() -> None:
    """A model added to the registry needs its line in the catalog (name and time use) to be listed."""
    from kgdistill.models import MODELS
    from kgdistill.models.zoo import time_use

    assert MODELS.names() == sorted(MODEL_INFO)
    assert {name: time_use(name) for name in MODELS} == {
        name: info.time_use for name, info in MODEL_INFO.items()
    }
