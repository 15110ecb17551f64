"""Every registered encoder, through the registry: it builds from a config spec, encodes real text into unit
float32 vectors of its width, names itself by a key without secrets, and refuses unknown keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kgdistill.errors import ConfigError
from kgdistill.llm import ENCODERS

TEXTS = ["Barack Obama was born in Honolulu.", "Honolulu", "was born in"]


def _specs(minilm: Path, scripted: Any) -> dict[str, dict[str, Any]]:
    """A buildable spec per registered encoder (local models from installed packages; the OpenAI-compatible
    client against the scripted server on 127.0.0.1)."""
    return {
        "sentence_transformers": {"device": "cpu"},
        "hf": {"path": str(minilm), "device": "cpu"},
        "openai": {"base_url": scripted.base_url, "model": "fake", "max_retries": 0},
    }


@pytest.fixture
def spec_of(minilm_path: Path, scripted: Any) -> Callable[[str], dict[str, Any]]:
    specs = _specs(minilm_path, scripted)

    def get(name: str) -> dict[str, Any]:
        assert name in specs, f"registered encoder '{name}' has no spec in this test"
        return {"name": name, **specs[name]}

    return get


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_builds_and_encodes(name: str, spec_of: Callable[[str], dict]) -> None:
    enc = ENCODERS.build(spec_of(name), where="model.encoder")
    out = enc.encode(TEXTS)
    assert out.dtype == np.float32 and out.shape == (3, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        enc.encode(TEXTS[:1]), out[:1], atol=1e-5
    )  # batching does not matter
    assert enc.key.startswith(name + ":")


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_refuses_unknown_keys(name: str, spec_of: Callable[[str], dict]) -> None:
    with pytest.raises(ConfigError, match=r"'model\.encoder\.colour'"):
        ENCODERS.build({**spec_of(name), "colour": "red"}, where="model.encoder")


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_documents_itself(name: str) -> None:
    doc = ENCODERS.get(name).__doc__ or ""
    assert "Args:" in doc
