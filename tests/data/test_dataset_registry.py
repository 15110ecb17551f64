"""Every registered dataset, through the registry: found under the data root (YAGO11k also bundled), read with
its reader, and built into a graph whose splits use ids inside the vocabulary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from kgdistill.data import DATASETS, load_kg
from kgdistill.errors import DataError

KINDS = {"static", "interval", "point"}


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_loads_from_the_data_root(name: str, data_root: Path) -> None:
    entry = DATASETS.get(name)
    assert entry.kind in KINDS and entry.description
    kg = load_kg(name, root=data_root)
    assert set(kg.splits) == {"train", "valid", "test"}
    assert kg.temporal is (entry.kind != "static")
    for split, facts in kg.splits.items():
        assert len(facts) > 0, split
        assert int(facts[:, [0, 2]].max()) < kg.num_entities
        assert int(facts[:, 1].max()) < kg.num_relations
        if kg.temporal:
            assert int(facts[:, 3].max()) < kg.num_times
    if not kg.temporal:  # static facts are modelled as they are
        assert torch.equal(kg.splits["train"], kg.facts["train"])


@pytest.mark.parametrize("name", DATASETS.names())
def test_a_missing_dataset_names_where_it_looked(name: str, tmp_path: Path) -> None:
    entry = DATASETS.get(name)
    if entry.bundled:
        assert load_kg(name, root=tmp_path).num_entities > 0  # falls back to the bundled copy
        return
    with pytest.raises(DataError, match=re.escape(str(tmp_path / entry.folder))):
        load_kg(name, root=tmp_path)
