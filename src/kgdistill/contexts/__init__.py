"""LLM-written contexts for every entity and triple of a graph (contextualization distillation, arXiv 2402.01729).

* :mod:`.prompts` - the prompt paths ``ed`` (entity descriptions), ``td`` (triple descriptions) and ``ed+td``,
  with editable templates over the graph's verbalised labels;
* :mod:`.job` - :func:`generate_contexts`: a restartable batch job through any generator of
  :data:`kgdistill.llm.GENERATORS`, with quality filters (:mod:`.filters`) and retries; :func:`plan_contexts`
  is its dry run (prompts and cost estimate);
* :mod:`.store` - the append-only JSONL store (one record per key, with its prompt, model, sampling, tokens,
  seconds, attempts and time) and :class:`ContextStore` to read it, composing a triple's T->ED context from its
  head's and tail's entity contexts;
* :mod:`.exchange` - plain ``key<TAB>text`` files in and out, the real LLM files of CP-KGC, and coverage.

``kgdistill contexts generate | export | import | coverage`` is the command line (:mod:`.cli`).

The names below are imported on first use (PEP 562): ``kgdistill --help`` imports :mod:`.cli`, which must stay
light.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_LAZY = {
    "ImportReport": "exchange",
    "coverage": "exchange",
    "export_contexts": "exchange",
    "import_contexts": "exchange",
    "read_context_file": "exchange",
    "QualityFilter": "filters",
    "JobReport": "job",
    "generate_contexts": "job",
    "plan_contexts": "plan",
    "select_items": "job",
    "PATHS": "prompts",
    "Templates": "prompts",
    "WorkItem": "prompts",
    "work_items": "prompts",
    "ContextStore": "store",
    "StoreWriter": "store",
    "compose_entities": "store",
    "read_store": "store",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"kgdistill.contexts.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kgdistill.contexts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
