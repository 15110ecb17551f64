"""The dry run of a generation job: a few rendered prompts, the keys to do, and what they would cost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgdistill.contexts.job import prompt_of, select_items
from kgdistill.contexts.prompts import Templates
from kgdistill.contexts.store import read_store

if TYPE_CHECKING:
    from kgdistill.data.kg import KG
    from kgdistill.llm.generators import Prompt, Sampling

__all__ = ["plan_contexts", "token_counter"]


def token_counter(spec: dict[str, Any]) -> tuple[Any, str]:
    """``prompt -> tokens`` for a generator spec without loading its model: the tokenizer of a local ``hf``
    model where it is at hand, else the ``words * 1.3`` estimate."""
    from kgdistill.llm.generators import estimate_tokens, model_cache_dir

    if str(spec.get("name", "")).lower() == "hf":
        from kgdistill.llm.gen_hf import DEFAULT_MODEL

        folder = Path(spec["path"]) if spec.get("path") else model_cache_dir() / DEFAULT_MODEL
        if (folder / "tokenizer_config.json").is_file():
            try:
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except Exception:  # pragma: no cover - fall back to the estimate
                return estimate_tokens, "estimate (words x 1.3)"
            from kgdistill.llm.generators import as_messages

            def count(prompt: Prompt) -> int:
                msgs = as_messages(prompt)
                if getattr(tok, "chat_template", None):
                    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
                    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
                    return len(ids)
                return len(tok("\n\n".join(m["content"] for m in msgs))["input_ids"])

            return count, f"tokenizer of {folder.name}"
    return estimate_tokens, "estimate (words x 1.3)"


def plan_contexts(
    kg: KG,
    store: str | os.PathLike[str],
    generator_spec: dict[str, Any],
    *,
    path: str = "ed+td",
    templates: Templates | None = None,
    sampling: Sampling | None = None,
    keys: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
    examples: int = 3,
) -> dict[str, Any]:
    """The dry run of :func:`generate_contexts`: example prompts, keys to do and the cost estimate.

    Args:
        generator_spec: the generator's spec (its model is not loaded; an ``hf`` tokenizer is, when local).
        price_in / price_out: price per million prompt / generated tokens (e.g. USD), for the money estimate.

    Returns:
        ``examples`` (key and prompt), ``selected``, ``already``, ``to_generate``, ``prompt_tokens``,
        ``prompt_tokens_method``, ``output_tokens_max`` (``max_new_tokens`` per key), and ``cost_max`` when a price
        is given (retries of rejected texts come on top).
    """
    from kgdistill.llm.generators import Sampling

    templates = templates or Templates()
    sampling = sampling or Sampling()
    items = select_items(kg, path, templates, keys=keys, limit=limit)
    stored = read_store(store).records if Path(store).is_file() else {}
    todo = [it for it in items if it.rid not in stored]
    count, method = token_counter(generator_spec)
    prompt_tokens = sum(count(prompt_of(it, templates)) for it in todo)
    out_max = len(todo) * sampling.max_new_tokens
    plan: dict[str, Any] = {
        "dataset": kg.name,
        "path": path,
        "store": str(store),
        "generator": generator_spec,
        "sampling": sampling.model_dump(mode="json"),
        "examples": [{"key": it.describe(), "prompt": it.prompt} for it in todo[:examples]],
        "selected": len(items),
        "already": len(items) - len(todo),
        "to_generate": len(todo),
        "prompt_tokens": prompt_tokens,
        "prompt_tokens_method": method,
        "output_tokens_max": out_max,
    }
    if price_in is not None or price_out is not None:
        cost = prompt_tokens / 1e6 * (price_in or 0.0) + out_max / 1e6 * (price_out or 0.0)
        plan["cost_max"] = round(cost, 4)
        plan["prices_per_million"] = {"input": price_in or 0.0, "output": price_out or 0.0}
    return plan
