"""Fixtures of the context tests: small real graphs, a scripted generator (a test double for the job's logic),
and the CLI."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kgdistill.cli import cli
from kgdistill.data import KG, build_kg, read_static_names
from kgdistill.llm.generators import Generation, Prompt, Sampling, as_messages, estimate_tokens

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session")
def wn_mini() -> KG:
    """A real WN18RR subset (``tests/fixtures/wn18rr-mini``)."""
    return build_kg(read_static_names(FIXTURES / "wn18rr-mini"))


class ScriptedGenerator:
    """A test double of a generator: ``answer(prompt_text, sampling) -> text``; records every call.

    Not a model: it exercises the job's batching, filtering, retrying and resuming, where a real model cannot be
    made to produce a rejected text on demand. ``fail_on_call`` raises before that (1-based) call.
    """

    key = "scripted:test-double"

    def __init__(
        self,
        answer: Callable[[str, Sampling], str],
        *,
        batch_size: int = 4,
        fail_on_call: int | None = None,
    ) -> None:
        self.answer = answer
        self.batch_size = batch_size
        self.fail_on_call = fail_on_call
        self.calls: list[tuple[list[str], Sampling]] = []

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, *, keys: Sequence[str] | None = None
    ) -> list[Generation]:
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            raise RuntimeError("scripted failure")
        self.calls.append((list(keys or []), sampling))
        texts = [as_messages(p)[-1]["content"] for p in prompts]
        return [Generation(self.answer(t, sampling), 10, 20, 0.01, "stop") for t in texts]

    def count_tokens(self, prompt: Prompt) -> int:
        return estimate_tokens(prompt)


LONG = " ".join(f"word{i}" for i in range(120))


@pytest.fixture
def scripted_generator() -> type[ScriptedGenerator]:
    return ScriptedGenerator


def invoke(*args: str) -> Result:
    """``kgdistill -q ARGS`` in this process (``exit_code``, ``stdout``, ``output``: stdout and stderr)."""
    return CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)
