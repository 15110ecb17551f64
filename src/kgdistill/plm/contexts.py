"""Context features: the context store's texts tokenised for a PLM model's auxiliary task, before the model.

The seed's contextualization distillation (methods.md section 3) trains a PLM-based KG-completion model on
``L = L_KGC + lambda L_aux``, where the auxiliary task reads an LLM-written *context* of each training triple:
masked-token recovery over it (``reconstruction``, encoder models) or writing it from the triple
(``contextualization``, the generative model). :func:`context_tokens` reads a context store
(:mod:`kgdistill.contexts.store`) and tokenises, once:

* ``entities (E, L_c)``: each entity's context (T->ED records), empty for an entity without one;
* ``triples (N, L_c)``: the training triples' own contexts (T->TD records), keyed by ``(h * R + r) * E + t``
  in ``keys (N,)`` (sorted), when ``triples`` is on.

A training triple's context is its own where the store has one, else its head's and tail's entity contexts
together (T->ED, each cut to half the window unless the other is shorter), else none: such triples are left
out of the auxiliary loss, and every case is counted in the report. Only training triples are ever read:
contexts the store holds for valid or test triples are counted and ignored (they would leak the answers).
Texts longer than ``max_length`` tokens are cut (counted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field

from kgdistill.data.kg import KG
from kgdistill.errors import ConfigError
from kgdistill.plm.tokens import TokenTable, tokenize

__all__ = [
    "CONTEXT_FILLED",
    "ContextTokens",
    "check_context_window",
    "context_tokens",
    "triple_keys",
]

log = logging.getLogger(__name__)


def triple_keys(
    h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, num_entities: int, num_relations: int
) -> torch.Tensor:
    """One int64 key per triple: ``(h * R + r) * E + t`` for ``h, r, t (N,)`` with ``r < R``."""
    return (h.long() * num_relations + r.long()) * num_entities + t.long()


@dataclass(frozen=True)
class ContextTokens:
    """The tokenised contexts of a graph.

    Attributes:
        entities: ``(E, L_c)`` entity contexts (length 0 where an entity has none).
        triples: ``(N, L_c)`` own contexts of ``N`` training triples (``N`` may be 0).
        keys: ``(N,)`` sorted int64 keys of those triples (:func:`triple_keys`).
        num_relations: ``R``, the graph's original relations (the keys' base).
        max_length: the context window in tokens (without special tokens).
        mask_rate: share of context tokens masked by ``reconstruction`` (encoder models).
        prefix: the triple's text comes before the masked context (``reconstruction``).
        rows: at most this many queries of a batch get the auxiliary task (``None``: all).
        report: the store, its coverage of the graph and the truncation counts.
    """

    entities: TokenTable
    triples: TokenTable
    keys: torch.Tensor
    num_relations: int
    max_length: int
    mask_rate: float = 0.15
    prefix: bool = True
    rows: int | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild the tables' shapes (the state dict fills them)."""
        return {
            "entities": list(self.entities.ids.shape),
            "triples": list(self.triples.ids.shape),
            "num_relations": self.num_relations,
            "max_length": self.max_length,
            "mask_rate": self.mask_rate,
            "prefix": self.prefix,
            "rows": self.rows,
            "report": self.report,
        }

    @classmethod
    def placeholder(cls, meta: dict[str, Any]) -> ContextTokens:
        """Zero tables of the shapes in ``meta`` (from :meth:`meta`)."""
        return cls(
            entities=TokenTable.zeros(*meta["entities"]),
            triples=TokenTable.zeros(*meta["triples"]),
            keys=torch.zeros(meta["triples"][0], dtype=torch.long),
            num_relations=int(meta["num_relations"]),
            max_length=int(meta["max_length"]),
            mask_rate=float(meta["mask_rate"]),
            prefix=bool(meta["prefix"]),
            rows=meta["rows"],
        )


def _share(n: int, total: int) -> dict[str, Any]:
    return {"n": n, "of": total, "share": round(n / total, 4) if total else 0.0}


def _store_triples(
    kg: KG, triples: dict[tuple[str, str, str], str]
) -> tuple[torch.Tensor, list[str], dict[str, int]]:
    """The store's triple contexts that are training triples of ``kg``: their keys ``(N,)`` (sorted), texts, and
    counts of the triple records left out (``eval``: valid or test triples; ``unknown``: not in the graph)."""
    ent, rel = kg.entity_labels, kg.relation_labels
    e_id = {label: i for i, label in enumerate(ent)}
    r_id = {label: i for i, label in enumerate(rel)}
    E, R = kg.num_entities, kg.num_relations
    train = kg.splits["train"]
    train_keys = set(triple_keys(train[:, 0], train[:, 1], train[:, 2], E, R).tolist())
    counts = {"eval": 0, "unknown": 0}
    found: dict[int, str] = {}
    for (h, r, t), text in triples.items():
        ids = (e_id.get(h), r_id.get(r), e_id.get(t))
        if None in ids:
            counts["unknown"] += 1
            continue
        key = (ids[0] * R + ids[1]) * E + ids[2]
        if key in train_keys:
            found[key] = text
        else:
            counts["eval"] += 1
    order = sorted(found)
    return torch.tensor(order, dtype=torch.long), [found[k] for k in order], counts


def context_tokens(
    kg: KG,
    tokenizer: Any,
    *,
    store: str,
    max_length: Annotated[int, Field(ge=8, le=8192)] = 128,
    triples: bool = True,
    mask_rate: Annotated[float, Field(gt=0, lt=1)] = 0.15,
    prefix: bool = True,
    rows: Annotated[int, Field(ge=1)] | None = None,
    pad: int = 0,
) -> ContextTokens:
    """Tokenise the contexts of ``store`` for ``kg``'s entities and training triples (see the module docstring).

    Args:
        tokenizer: the model's Hugging Face tokenizer (no special tokens are added).
        store: a context store (JSONL, ``kgdistill contexts generate`` / ``import``).
        max_length: the context window in tokens.
        triples: read the store's per-triple contexts too (else entity contexts only).
        mask_rate: share of context tokens masked by ``reconstruction`` (encoder models; BERT: 0.15).
        prefix: ``reconstruction`` reads ``[CLS] head [SEP] relation [SEP] tail [SEP]`` before the masked context,
            so recovering it is tied to the triple (else the context alone).
        rows: at most this many queries of each batch get the auxiliary task (``None``: every query); bounds
            its cost when contexts are long.
        pad: the padding token id of the tables.

    Raises:
        ConfigError: the store is missing, or has no context for any entity or training triple of ``kg``
            (a store of another dataset); names the key ``model.context.store``.
    """
    from kgdistill.contexts.store import ContextStore
    from kgdistill.errors import DataError

    path = Path(store).expanduser()
    try:
        contexts = ContextStore(path)
    except DataError as e:
        raise ConfigError(f"config key 'model.context.store': {e}") from None
    labels = kg.entity_labels
    ent_texts = [contexts.entity(label) or "" for label in labels]
    keys, tri_texts, left_out = _store_triples(kg, contexts.triples if triples else {})
    n_ent = sum(bool(t) for t in ent_texts)
    if n_ent == 0 and len(keys) == 0:
        raise ConfigError(
            f"config key 'model.context.store': '{path.name}' (dataset '{contexts.dataset}') has no context "
            f"for any entity or training triple of dataset '{kg.name}'"
        )
    entities = TokenTable.of(tokenize(tokenizer, ent_texts), max_length, pad)
    own = TokenTable.of(tokenize(tokenizer, tri_texts), max_length, pad)
    train = kg.splits["train"]
    has = entities.lengths > 0
    own_rows = torch.isin(
        triple_keys(train[:, 0], train[:, 1], train[:, 2], kg.num_entities, kg.num_relations), keys
    )
    composed = ~own_rows & (has[train[:, 0]] | has[train[:, 2]])
    report = {
        "store": path.name,
        "store_dataset": contexts.dataset,
        "max_length": max_length,
        "entities": _share(n_ent, kg.num_entities),
        "train_triples": {
            "own": _share(int(own_rows.sum()), len(train)),
            "from_entities": _share(int(composed.sum()), len(train)),
            "none": _share(int((~own_rows & ~composed).sum()), len(train)),
        },
        "ignored_triple_records": left_out,
        "truncated": {"entities": entities.truncated, "triples": own.truncated},
        "mean_entity_tokens": round(float(entities.lengths[has].float().mean()), 2) if n_ent else 0,
    }
    none = report["train_triples"]["none"]
    if none["share"] > 0.5:
        log.warning(
            "the context store %s covers few training triples: %d of %d have no context (left out of the "
            "auxiliary loss)",
            path.name,
            none["n"],
            none["of"],
        )
    if any(report["truncated"].values()):
        log.warning(
            "contexts longer than the %d-token window were cut: %s", max_length, report["truncated"]
        )
    return ContextTokens(
        entities=entities,
        triples=own,
        keys=keys,
        num_relations=kg.num_relations,
        max_length=max_length,
        mask_rate=mask_rate,
        prefix=prefix,
        rows=rows,
        report=report,
    )


#: arguments of :func:`~kgdistill.plm.contexts.context_tokens` that the feature builders fill, not the config
CONTEXT_FILLED = {"kg": None, "tokenizer": None, "pad": None}


def check_context_window(contexts: ContextTokens, prompt: int, limit: int, what: str) -> None:
    """The longest auxiliary sequence (a prompt of ``prompt`` tokens, the context, an end token) must fit the
    model's ``limit`` positions."""
    if prompt + contexts.max_length + 1 > limit:
        raise ConfigError(
            f"config key 'model.context.max_length': {contexts.max_length} context tokens after a {prompt}-token "
            f"prompt are more than the {what}'s {limit} positions"
        )
