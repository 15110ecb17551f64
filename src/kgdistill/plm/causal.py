"""LM features: a causal language model's weights and the graph's texts tokenised for it, before the model.

The generative model (:mod:`kgdistill.models.generative`) reads a prompt ``head | relation [| time]`` and
generates the answer entity's name. :func:`lm_features` tokenises everything once with the LM's tokenizer (no
special tokens), so the model assembles prompts from tensors only:

* the chat frame: the tokens the tokenizer's chat template puts before a user message (``prefix``) and after
  it, up to the assistant's turn (``suffix``); a tokenizer without a template frames with its BOS token and a
  newline;
* ``entities (E, L_e)``: the prompt text of each entity (``name: description``), ``names (E, L_n)``: the
  answer text (the name alone), ``relations (2R, L_r)`` (reciprocals after the originals), ``times (T, L_t)``;
* ``sep``: the tokens of ``" | "``; ``eos``: the token that ends an answer.

``max_length`` is the prompt window (frame included): a relation keeps at most a third of what the frame and
separators leave, a time phrase half, and the head's text is cut per query to what is left. Answer names keep
at most ``answer_length`` tokens. Tables are right-padded; the model packs every sequence to the left and
passes position ids, so the tokenizer's own padding side plays no part. Cuts are counted in the report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field

from kgdistill.data.kg import KG
from kgdistill.errors import ConfigError
from kgdistill.plm.contexts import (
    CONTEXT_FILLED,
    ContextTokens,
    check_context_window,
    context_tokens,
)
from kgdistill.plm.meta import TokenFeatures
from kgdistill.plm.tokens import TokenTable, tokenize

__all__ = ["LM_OPTIONS", "LMFeatures", "build_causal_lm", "lm_features", "tokenize_graph_lm"]

log = logging.getLogger(__name__)

#: Config keys of the ``model`` section that configure the LM features, not the model.
LM_OPTIONS = frozenset({"lm", "text", "max_length", "answer_length", "context"})

#: Architecture suffixes of causal language models.
_CAUSAL = ("ForCausalLM", "LMHeadModel")
_MARK = "\x00KGDISTILL\x00"


@dataclass(frozen=True)
class LMFeatures(TokenFeatures):
    """What a generative model is built from.

    Attributes:
        config: the LM's Hugging Face config (``PretrainedConfig.to_dict()``).
        entities: ``(E, L_e)`` entity prompt texts; names: ``(E, L_n)`` answer names.
        relations: ``(2R, L_r)`` relation texts, then the reciprocals'; times: ``(T, L_t)`` or ``None``.
        special: ``prefix``, ``suffix`` and ``sep`` token lists, ``eos`` and ``pad`` ids.
        max_length: the prompt window (tokens, frame included). answer_length: most name tokens kept.
        state: the pre-trained weights, or ``None`` (random, or filled from a checkpoint).
        contexts: the training triples' contexts for the ``contextualization`` task, or ``None``.
        report: texts' sources and truncation counts.
    """

    TABLES: ClassVar[tuple[str, ...]] = ("entities", "names", "relations")
    SIZES: ClassVar[tuple[str, ...]] = ("max_length", "answer_length")

    config: dict[str, Any]
    entities: TokenTable
    names: TokenTable
    relations: TokenTable
    times: TokenTable | None
    special: dict[str, Any]
    max_length: int
    answer_length: int
    state: dict[str, torch.Tensor] | None = None
    contexts: ContextTokens | None = None
    report: dict[str, Any] = field(default_factory=dict)


def build_causal_lm(config: dict[str, Any]) -> torch.nn.Module:
    """A causal LM (``AutoModelForCausalLM``) with random float32 weights from a config dict: no file read."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    return AutoModelForCausalLM.from_config(
        AutoConfig.for_model(cfg.pop("model_type"), **cfg), dtype=torch.float32
    )


def chat_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids the tokenizer's chat template puts before and after one user message (the assistant's turn
    opened); without a template: its BOS token (if any) and a newline."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _MARK}], tokenize=False, add_generation_prompt=True
        )
        before, after = text.split(_MARK)
        enc = tokenize(tokenizer, [before, after])
        return enc[0], enc[1]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos, tokenize(tokenizer, ["\n"])[0]


def tokenize_graph_lm(
    kg: KG,
    tokenizer: Any,
    config: dict[str, Any],
    *,
    texts: Any,
    names: Sequence[str],
    max_length: int,
    answer_length: int = 16,
) -> LMFeatures:
    """Token tables of ``texts`` (a :class:`~kgdistill.text.KGTexts` of ``kg``, the prompts) and ``names`` (the
    answers) for a prompt window of ``max_length``."""
    prefix, suffix = chat_frame(tokenizer)
    sep = tokenize(tokenizer, [" | "])[0]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("config key 'model.lm': the tokenizer has no end-of-sequence token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    seps = len(sep) * (2 if texts.times else 1)
    free = max_length - len(prefix) - len(suffix) - seps
    if free < 3:
        raise ConfigError(
            f"config key 'model.max_length': {max_length} leaves {free} tokens for texts after the "
            f"{len(prefix) + len(suffix)}-token chat frame"
        )
    entities = TokenTable.of(tokenize(tokenizer, texts.entities), free, pad)
    answers = TokenTable.of(tokenize(tokenizer, list(names)), answer_length, pad)
    relations = TokenTable.of(tokenize(tokenizer, texts.all_relations()), max(free // 3, 1), pad)
    times = (
        TokenTable.of(tokenize(tokenizer, texts.times), max(free // 2, 1), pad)
        if texts.times
        else None
    )
    truncated = {
        "entities": entities.truncated,
        "names": answers.truncated,
        "relations": relations.truncated,
        "times": 0 if times is None else times.truncated,
    }
    if any(truncated.values()):
        log.warning("texts longer than their budgets were truncated: %s", truncated)
    report = {
        "max_length": max_length,
        "answer_length": answer_length,
        "frame_tokens": len(prefix) + len(suffix),
        "truncated": truncated,
        "mean_name_tokens": round(float(answers.lengths.float().mean()), 2),
        "texts": texts.report,
    }
    special = {"prefix": prefix, "suffix": suffix, "sep": sep, "eos": int(eos), "pad": int(pad)}
    return LMFeatures(
        config=config,
        entities=entities,
        names=answers,
        relations=relations,
        times=times,
        special=special,
        max_length=max_length,
        answer_length=answer_length,
        report=report,
    )


def lm_folder(path: str | None) -> Path:
    """The folder of ``path``, or of the packaged SmolLM2-135M-Instruct when ``None``.

    Raises:
        ConfigError: the folder does not exist, has no ``config.json`` or holds no causal LM (names the path).
    """
    if path is None:
        from kgdistill.llm.gen_hf import default_generator_folder

        return default_generator_folder()
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is a file, not a model folder" if folder.exists() else "does not exist"
        raise ConfigError(f"config key 'model.lm': '{path}' {what} (a local Hugging Face folder)")
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"config key 'model.lm': '{path}' is not a Hugging Face model folder (no config.json)"
        )
    return folder.resolve()


def _check_causal(config: Any, folder: Path) -> None:
    arch = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith(_CAUSAL) for a in arch):
        what = ", ".join(arch) or f"a '{config.model_type}' model"
        raise ConfigError(
            f"config key 'model.lm': '{folder}' holds {what}, not a causal language model: give a "
            "decoder folder (Llama, SmolLM2, GPT-2, Qwen, ...)"
        )


def lm_features(
    kg: KG,
    *,
    lm: str | None = None,
    text: dict[str, Any] | None = None,
    max_length: Annotated[int, Field(ge=16, le=8192)] = 128,
    answer_length: Annotated[int, Field(ge=1, le=512)] = 16,
    context: dict[str, Any] | None = None,
    progress: bool = True,
) -> LMFeatures:
    """Tokenise ``kg``'s texts for the causal LM in the local folder ``lm`` and read its weights.

    Args:
        lm: a local Hugging Face causal-LM folder; ``None`` = the packaged SmolLM2-135M-Instruct.
        text: keyword arguments of :func:`kgdistill.text.kg_texts` for the prompts (the answers are the same
            texts without descriptions).
        max_length: the prompt window in tokens, chat frame included.
        answer_length: most tokens of an answer name (the end-of-sequence token comes after them).
        context: keyword arguments of :func:`kgdistill.plm.contexts.context_tokens` (``store``, a context
            store, and its window): the contexts of the ``contextualization`` task; ``None``: none.
        progress: unused (tokenising is fast); accepted like the other feature builders.

    Raises:
        ConfigError: a missing folder, a folder without a model, or an encoder-only model (names the folder).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from kgdistill.registry import check_kwargs
    from kgdistill.text import kg_texts

    text = check_kwargs(kg_texts, dict(text or {}), where="model.text", context={"kg": None})
    folder = lm_folder(lm)
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"config key 'model.lm': cannot read the model in '{folder}': {e}"
        ) from None
    _check_causal(config, folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError) as e:
        raise ConfigError(f"config key 'model.lm': cannot load '{folder}': {e}") from None
    limit = int(getattr(config, "max_position_embeddings", 0) or 1 << 30)
    if max_length + answer_length + 1 > limit:
        raise ConfigError(
            f"config key 'model.max_length': {max_length} prompt + {answer_length + 1} answer tokens "
            f"are more than the LM's {limit} positions"
        )
    names = kg_texts(kg, **{**text, "descriptions": False}).entities
    feats = tokenize_graph_lm(
        kg,
        tokenizer,
        model.config.to_dict(),
        texts=kg_texts(kg, **text),
        names=names,
        max_length=max_length,
        answer_length=answer_length,
    )
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    report = {**feats.report, "lm": folder.name}
    contexts = None
    if context is not None:
        options = check_kwargs(
            context_tokens, dict(context), where="model.context", context=CONTEXT_FILLED
        )
        contexts = context_tokens(kg, tokenizer, pad=feats.special["pad"], **options)
        check_context_window(contexts, max_length, limit, "LM")
        report["contexts"] = contexts.report
    return LMFeatures(**{**feats.__dict__, "state": state, "contexts": contexts, "report": report})
