"""Local encoders on the real all-MiniLM-L6-v2: shapes, normalisation, semantics, backend parity, config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kgdistill.errors import ConfigError
from kgdistill.llm import ENCODERS, Encoder, HFEncoder, LLMError, build_encoder, check_texts

FOOD = "A man is eating food."
BREAD = "A man is eating a piece of bread."
MOVIE = "The new movie is awesome."


@pytest.fixture(scope="session")
def hf_encoder(minilm_path: Path) -> HFEncoder:
    return ENCODERS.build({"name": "hf", "path": str(minilm_path), "device": "cpu"})


def test_minilm_shape_norm_and_semantics(st_encoder: Encoder) -> None:
    texts = [FOOD, BREAD, MOVIE, "Paris is the capital of France."]
    emb = st_encoder.encode(texts)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    assert st_encoder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    close, far = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert close > far
    assert close > 0.6 and far < 0.2  # the model's known values are 0.755 and -0.046
    assert st_encoder.key.startswith("sentence_transformers:/")
    assert isinstance(st_encoder, Encoder)


def test_minilm_batches_agree(st_encoder: Encoder) -> None:
    texts = [f"entity number {i} of the graph" for i in range(70)]
    whole = st_encoder.encode(texts)
    parts = np.concatenate([st_encoder.encode(texts[:5]), st_encoder.encode(texts[5:])])
    np.testing.assert_allclose(whole, parts, atol=1e-5)


def test_hf_matches_sentence_transformers(st_encoder: Encoder, hf_encoder: HFEncoder) -> None:
    texts = [FOOD, BREAD, MOVIE, "short", "a much longer sentence " * 8]
    a, b = st_encoder.encode(texts), hf_encoder.encode(texts)
    assert b.shape == (5, 384)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert hf_encoder.max_length == 256  # read from sentence_bert_config.json
    assert hf_encoder.key != st_encoder.key


def test_unnormalised_option(minilm_path: Path, hf_encoder: HFEncoder) -> None:
    raw = HFEncoder(path=str(minilm_path), device="cpu", normalize=False)
    out = raw.encode([FOOD, MOVIE])
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
    normed = out / np.linalg.norm(out, axis=1, keepdims=True)
    np.testing.assert_allclose(normed, hf_encoder.encode([FOOD, MOVIE]), atol=1e-6)
    assert raw.key != hf_encoder.key  # different vectors, different cache key


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_blank_text_refused_with_index(st_encoder: Encoder, bad: str) -> None:
    with pytest.raises(LLMError, match="text 2 is empty or only whitespace"):
        st_encoder.encode(["one", "two", bad, "four", ""])


def test_check_texts_types() -> None:
    with pytest.raises(LLMError, match="not one string"):
        check_texts("abc")  # type: ignore[arg-type]
    with pytest.raises(LLMError, match="text 1 is a int"):
        check_texts(["a", 3])  # type: ignore[list-item]
    assert check_texts(("a", "b")) == ["a", "b"]


def test_empty_list(st_encoder: Encoder) -> None:
    assert st_encoder.encode([]).shape == (0, 384)


def test_hf_missing_path_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config key 'path'.*does not exist"):
        build_encoder({"name": "hf", "path": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="config key 'path' is required"):
        build_encoder({"name": "hf"})


def test_unknown_key_and_backend() -> None:
    with pytest.raises(ConfigError, match=r"encoder\.batchsize.*did you mean 'batch_size'"):
        build_encoder({"name": "hf", "path": "x", "batchsize": 3})
    with pytest.raises(ConfigError, match="unknown encoder 'sentence-transformer'"):
        build_encoder("sentence-transformer")
    assert {"hf", "openai", "sentence_transformers"} <= set(ENCODERS.names())


def test_gguf_architecture_read_with_the_gguf_package(tmp_path: Path) -> None:
    from kgdistill.llm import smollm2_gguf
    from kgdistill.llm.server import gguf_architecture

    assert gguf_architecture(smollm2_gguf()) == "llama"
    bad = tmp_path / "not.gguf"
    bad.write_bytes(b"GGML" + bytes(60))
    with pytest.raises(LLMError, match="not a readable GGUF file"):
        gguf_architecture(bad)
