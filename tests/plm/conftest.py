"""Fixtures of the PLM model tests: the WN18RR subset and its PLM features (the real all-MiniLM-L6-v2), and a
tiny local encoder folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any, TypeVar

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kgdistill.data import KG, build_kg, read_static_names
from kgdistill.data.batching import both_directions
from kgdistill.models import Vocab, build_model
from kgdistill.plm import PLMFeatures, plm_features
from kgdistill.types import TAIL

M = TypeVar("M")

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


# --------------------------------------------------------------------------------------------- helpers
def build_text_model(name: str, kg: KG, features: Any, cls: type[M], **kwargs: Any) -> M:
    """The registered model ``name`` over ``kg`` with its text ``features`` (``lm`` for the generative model,
    ``plm`` otherwise); checks its class."""
    kind = "lm" if name == "generative" else "plm"
    vocab = Vocab(kg.num_entities, kg.num_relations, tuple(kg.time.labels))
    model = build_model({"name": name, **kwargs}, vocab, {kind: features})
    assert isinstance(model, cls)
    return model


def check_scoring_paths(
    model: Any, kg: KG, facts: int, candidates: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``score_all``, ``score_candidates`` (chunks of 97 and of 7 candidates) and ``score_hrt`` of ``model``
    (in eval mode, ``chunk_size`` 97) agree on both directions of the first ``facts`` test facts.

    Returns:
        ``queries (N, 3|4)``, random ``candidates (N, C)`` and the ``score_hrt`` scores ``(N,)``.
    """
    q = both_directions(kg.splits["test"][:facts], kg.num_relations)
    cand = torch.randint(
        kg.num_entities, (len(q), candidates), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        full = model.score_all(q)
        some = model.score_candidates(q, cand)
        hrt = model.score_hrt(q)
        model.chunk_size = 7
        again = model.score_candidates(q, cand)
    assert full.shape == (len(q), kg.num_entities)
    torch.testing.assert_close(some, full.gather(1, cand), rtol=1e-4, atol=tol)
    torch.testing.assert_close(again, some, rtol=1e-4, atol=tol)
    torch.testing.assert_close(
        hrt, full.gather(1, q[:, TAIL : TAIL + 1])[:, 0], rtol=1e-4, atol=tol
    )
    return q, cand, hrt


def train_cli(*args: str) -> subprocess.Popen:
    """``kgdistill train ARGS`` in a subprocess (one thread, offline); stderr piped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kgdistill", "train", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def killed_and_resumed(config: Path, tmp_path: Path, timeout: float) -> tuple[Path, Path]:
    """Train ``config`` once into ``tmp_path/ref``; train it again into ``tmp_path/killed``, kill -9 that run
    after its first checkpoint (inside the stage) and resume it. Returns both run folders."""
    ref = train_cli(str(config), "--out", str(tmp_path / "ref"))
    assert ref.wait(timeout=timeout) == 0, ref.stderr.read().decode()  # type: ignore[union-attr]
    run = tmp_path / "killed"
    proc = train_cli(str(config), "--out", str(run))
    deadline = time.time() + timeout
    while (
        not (run / "last.safetensors").exists() and proc.poll() is None and time.time() < deadline
    ):
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be killed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = train_cli("--resume", str(run))
    assert resumed.wait(timeout=timeout) == 0, resumed.stderr.read().decode()  # type: ignore[union-attr]
    return tmp_path / "ref", run


def assert_same_weights(a: Path, b: Path, prefixes: tuple[str, ...]) -> None:
    """The tensors of the two runs' ``last.safetensors`` whose names start with ``prefixes`` are equal."""
    wa, wb = load_file(str(a / "last.safetensors")), load_file(str(b / "last.safetensors"))
    for k in wa:
        if k.startswith(prefixes):
            assert torch.equal(wa[k], wb[k]), k
