"""Fixtures of the PLM model tests: the WN18RR subset and its PLM features (the real all-MiniLM-L6-v2), and a
tiny local encoder folder."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from kgdistill.data import KG, build_kg, read_static_names
from kgdistill.plm import PLMFeatures, plm_features

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
#: Real texts of 300 of the subset's synsets (name and Qwen-7B synonyms), given as a user's entity file: long
#: texts whatever the data root holds.
SYNONYMS = FIXTURES / "llm-text-mini" / "entity2sysnonyms_Qwen.txt"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def wn_mini() -> KG:
    """A real WN18RR subset (``tests/fixtures/wn18rr-mini``); its texts come from the dataset's kg-bert files
    when ``KGDISTILL_DATA`` holds WN18RR, else from the synset offsets."""
    return build_kg(read_static_names(FIXTURES / "wn18rr-mini"))


@pytest.fixture(scope="session")
def minilm_wn(wn_mini: KG) -> PLMFeatures:
    """The packaged all-MiniLM-L6-v2 (weights and tokenizer) and the subset's texts in a 16-token window."""
    return plm_features(wn_mini, max_length=16, text={"entity_files": [str(SYNONYMS)]})


@pytest.fixture(scope="session")
def wn_store(wn_mini: KG, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A context store of the WN18RR subset: the real Qwen-7B synonyms of 300 of its synsets (CP-KGC), one
    entity context each (``name (synonyms: ...)``)."""
    from kgdistill.contexts.exchange import import_contexts

    path = tmp_path_factory.mktemp("wn-contexts") / "wn18rr-mini.jsonl"
    import_contexts(SYNONYMS, wn_mini, path)
    return path
