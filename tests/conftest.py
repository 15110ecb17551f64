"""Shared fixtures: small real graphs (committed fixtures and the bundled YAGO11k) and the full-data root.

Full datasets are found through ``KGDISTILL_DATA`` (default: the nearest ``shared/data`` beside the repository
or one of its parent folders; the session then exports it as ``KGDISTILL_DATA``, so the library finds the same
texts the tests do). Tests that need them use the ``data_root`` fixture, which skips with a message only when
the data is absent (CI always has it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill.data import KG, build_kg, load_kg, read_hyte, read_point_ids, read_static_names

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    """``$KGDISTILL_DATA``, else the nearest ``shared/data`` beside the repository or one of its parents."""
    env = os.environ.get("KGDISTILL_DATA")
    if env:
        return Path(env)
    for parent in REPO.parents:
        candidate = parent / "shared" / "data"
        if (candidate / "YAGO11k").is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder of the full benchmark datasets; skips the test when there is none."""
    root = _data_root()
    if root is None or not root.is_dir():
        pytest.skip(
            "full datasets not found: set KGDISTILL_DATA to the folder holding YAGO11k/, ICEWS14/, ..."
        )
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _nothing_written_into_the_checkout() -> Iterator[None]:
    """Tests write only to temporary folders: no run folder may appear in the repository."""
    runs = REPO / "runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    yield
    after = set(runs.iterdir()) if runs.is_dir() else set()
    assert after <= before, f"tests wrote run folders into the checkout: {sorted(after - before)}"


@pytest.fixture(scope="session")
def yago() -> KG:
    """The bundled YAGO11k (full size), default interval protocol."""
    return load_kg("yago11k")


@pytest.fixture(scope="session")
def tiny_tkg() -> KG:
    """Interval TKG: a real Wikidata12k subset (``tests/fixtures/wikidata12k-mini``)."""
    return build_kg(read_hyte(FIXTURES / "wikidata12k-mini"))


@pytest.fixture(scope="session")
def tiny_point_kg() -> KG:
    """Point-time TKG: a real ICEWS14 subset (``tests/fixtures/icews14-mini``)."""
    return build_kg(read_point_ids(FIXTURES / "icews14-mini", origin="2014-01-01"))


@pytest.fixture(scope="session")
def tiny_kg() -> KG:
    """Static KG: a real FB15k-237 subset (``tests/fixtures/fb15k237-mini``)."""
    return build_kg(read_static_names(FIXTURES / "fb15k237-mini"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reads a full benchmark dataset (the ``data_root`` fixture) is in the slow tier."""
    for item in items:
        if "data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config: pytest.Config) -> None:
    """``benchmarks/`` on the import path: the tests import the benchmark scripts (and they their helpers) as
    ``python benchmarks/NAME.py`` runs them."""
    import sys

    sys.path.append(str(REPO / "benchmarks"))
    # The library reads dataset texts (kg-bert, KG-S2S, ...) through $KGDISTILL_DATA only: a root found beside
    # the repository is exported, or a test's real texts would silently fall back to ids.
    root = _data_root()
    if root is not None and root.is_dir() and not os.environ.get("KGDISTILL_DATA"):
        os.environ["KGDISTILL_DATA"] = str(root)  # also when set but empty


# -- text generators ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2() -> object:
    """The real SmolLM2-135M-Instruct (``hf`` generator, default model) on CPU, loaded once per session.

    The first use on a machine converts the packaged GGUF into a cached Hugging Face folder (about 20-40 s).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from kgdistill.llm import build_generator

    return build_generator({"name": "hf", "device": "cpu", "batch_size": 8})


@pytest.fixture(scope="session")
def tiny_lm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, 16-d, a 96-token window) with the real SmolLM2 tokenizer and chat template:
    real plumbing (tokenizer, padding, generate) in milliseconds; its texts are gibberish."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from kgdistill.llm.gen_hf import default_generator_folder

    tokenizer = AutoTokenizer.from_pretrained(str(default_generator_folder()))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=96,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-lm")
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


# -- bi-encoder -----------------------------------------------------------------------------------------------

#: A tiny random BERT (1 layer, 32-d, no dropout) over the real all-MiniLM-L6-v2 vocabulary.
TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


@pytest.fixture(scope="session")
def tiny_plm() -> Callable[..., Any]:
    """``make(kg, max_length=16) -> PLMFeatures``: the graph's texts tokenised by the real all-MiniLM-L6-v2
    tokenizer, for :data:`TINY_BERT` with random weights: the bi-encoder's plumbing in milliseconds (tests/plm
    trains the real MiniLM)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    from kgdistill.plm import encoder_folder
    from kgdistill.plm.features import tokenize_graph
    from kgdistill.text import kg_texts

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_folder(None)), local_files_only=True)

    def make(kg: KG, max_length: int = 16) -> Any:
        return tokenize_graph(
            kg, tokenizer, dict(TINY_BERT), texts=kg_texts(kg), max_length=max_length
        )

    return make


@pytest.fixture(scope="session")
def tiny_encoder_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local encoder folder: a random 1-layer 32-d BERT (dropout 0.1) with the real MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from kgdistill.plm import encoder_folder

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_folder(None)), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-encoder")
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


# -- generative model -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_path: Path) -> Callable[..., Any]:
    """``make(kg, max_length=48) -> LMFeatures``: the graph's texts tokenised by the real SmolLM2 tokenizer (its
    chat frame included) for the tiny random Llama of ``tiny_lm_path``: the generative model's plumbing in
    seconds (tests/plm/test_generative.py trains the real SmolLM2)."""
    from kgdistill.plm.causal import lm_features

    def make(kg: KG, max_length: int = 48) -> Any:
        return lm_features(kg, lm=str(tiny_lm_path), max_length=max_length)

    return make
