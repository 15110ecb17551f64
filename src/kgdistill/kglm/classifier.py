"""The language model of the text task: relation classification of an entity pair, with or without knowledge
injected from a KGE (:class:`~kgdistill.kglm.fusion.KnowledgeInjection`).

The input is ``[CLS] head text [SEP] tail text [SEP]`` assembled from the token tables of
:func:`kgdistill.plm.plm_features` (no tokenizer at run time); the head's tokens mention the head entity and the
tail's the tail entity. The encoder's mean-pooled last hidden states go through a linear layer to the labels.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kgdistill.errors import ConfigError
from kgdistill.kglm.fusion import KnowledgeInjection
from kgdistill.kglm.task import macro_f1
from kgdistill.models.plm import _const, _cut, _piece, mean_pool, pack
from kgdistill.plm.encoders import build_encoder_module
from kgdistill.plm.features import PLMFeatures
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["EncoderClassifier", "RelationClassifier", "align_table", "evaluate_task", "fit_task"]

log = logging.getLogger(__name__)


def align_table(
    labels: list[str], kge_labels: list[str], table: FloatTensor
) -> tuple[FloatTensor, torch.Tensor]:
    """The KGE rows of the task's entities ``(E, d_k)`` by label (zeros where the KGE lacks one) and which rows
    it knows ``(E,)``; unknown entities are not injected (a counted fallback)."""
    from kgdistill.distill.teachers import align

    rows = align(labels, kge_labels)
    known = rows >= 0
    out = torch.zeros(len(labels), table.shape[1])
    out[known] = table[rows[known]].float()
    return out, known


class EncoderClassifier(nn.Module):
    """A Hugging Face encoder (with KGE vectors injected at entity mentions, or plain) and a linear head over
    its mean-pooled last states: what the text tasks share.

    Args:
        config / state: the encoder's Hugging Face config and weights (``state`` ``None``: random).
        num_labels: the classes. dim: the encoder's width.
        entity_table: ``(E, d_k)`` KGE vectors to inject, or ``None`` (the plain language model).
        layer / train_kge / gate_bias: of :class:`KnowledgeInjection`.
    """

    def __init__(
        self,
        config: dict[str, Any],
        state: dict[str, torch.Tensor] | None,
        num_labels: int,
        dim: int,
        *,
        entity_table: FloatTensor | None = None,
        layer: int = -1,
        train_kge: bool = False,
        gate_bias: float = -2.0,
    ) -> None:
        super().__init__()
        encoder = build_encoder_module(dict(config))
        if state is not None:
            encoder.load_state_dict(state, strict=True)
        # the encoder is a submodule of the injection when there is one, else of this module
        self.injection = (
            KnowledgeInjection(
                encoder, entity_table, layer=layer, train_kge=train_kge, gate_bias=gate_bias
            )
            if entity_table is not None
            else None
        )
        self.plain = encoder if self.injection is None else None
        self.head = nn.Linear(dim, num_labels)

    def hidden(self, ids: LongTensor, mask: torch.Tensor, mentions: LongTensor) -> FloatTensor:
        """``ids``, ``mask``, ``mentions (N, L)`` -> the last hidden states ``(N, L, D)`` (KGE vectors injected
        at the mentions when there is an injection)."""
        if self.injection is not None:
            return self.injection(ids, mask.long(), mentions)  # type: ignore[no-any-return]
        assert self.plain is not None
        return self.plain(input_ids=ids, attention_mask=mask.long())[0]  # type: ignore[no-any-return]


class RelationClassifier(EncoderClassifier):
    """See the module docstring.

    Args:
        features: the encoder's config and weights and the entity token tables.
        num_labels: the relation labels.
        entity_table: ``(E, d_k)`` KGE vectors to inject, or ``None`` (the plain language model).
        known: ``(E,)`` entities the KGE knows (others are not injected), or ``None`` (all).
        layer / train_kge / gate_bias: of :class:`KnowledgeInjection`.
    """

    def __init__(
        self,
        features: PLMFeatures,
        num_labels: int,
        *,
        entity_table: FloatTensor | None = None,
        known: torch.Tensor | None = None,
        layer: int = -1,
        train_kge: bool = False,
        gate_bias: float = -2.0,
    ) -> None:
        super().__init__(
            features.config,
            features.state,
            num_labels,
            features.dim,
            entity_table=entity_table,
            layer=layer,
            train_kge=train_kge,
            gate_bias=gate_bias,
        )
        self.register_buffer("tokens", features.entities.ids.clone())
        self.register_buffer("lengths", features.entities.lengths.clone())
        n = features.entities.ids.shape[0]
        self.register_buffer(
            "known", torch.ones(n, dtype=torch.bool) if known is None else known.clone()
        )
        self.special = dict(features.special)
        self.max_length = features.max_length

    def sequences(
        self, pairs: LongTensor
    ) -> tuple[LongTensor, torch.Tensor, LongTensor, LongTensor]:
        """``pairs (N, 2)`` -> packed ``ids``, ``mask``, ``mentions (N, L)`` (the entity id of each head and
        tail token the KGE knows, else -1) and ``side (N, L)`` (0 on the head's tokens, 1 on the tail's, else
        -1). Head and tail share the window, each at least half of it."""
        h, t = pairs[:, 0], pairs[:, 1]
        n, dev = len(pairs), pairs.device
        room = torch.full((n,), self.max_length - 3, device=dev)
        len_h, len_t = self.lengths[h].long(), self.lengths[t].long()
        tail_room = torch.minimum(len_t, torch.maximum(room // 2, room - len_h))
        head = _cut(_piece(self.tokens, self.lengths, h, 0), room - tail_room)
        tail = _cut(_piece(self.tokens, self.lengths, t, 0), tail_room)
        cls, sep = self.special["cls"], self.special["sep"]
        ids, mask, _ = pack(
            [_const(cls, n, dev, 0), head, _const(sep, n, dev, 0), tail, _const(sep, n, dev, 0)]
        )

        def entity(rows: LongTensor, piece: Any) -> Any:
            who = torch.where(self.known[rows], rows, -1)[:, None].expand_as(piece[0])
            return who, piece[1], 0

        def marked(value: int, piece: Any) -> Any:
            return torch.full_like(piece[0], value), piece[1], 0

        def spread(head_piece: Any, tail_piece: Any) -> LongTensor:
            pieces = [_const(-1, n, dev, 0), head_piece, _const(-1, n, dev, 0)]
            out, _, _ = pack([*pieces, tail_piece, _const(-1, n, dev, 0)])
            return out.masked_fill(~mask, -1)

        mentions = spread(entity(h, head), entity(t, tail))
        return ids, mask, mentions, spread(marked(0, head), marked(1, tail))

    def forward(self, pairs: LongTensor) -> FloatTensor:
        """``pairs (N, 2)`` -> label logits ``(N, num_labels)``."""
        return self.forward_states(pairs)[0]

    def forward_states(self, pairs: LongTensor) -> tuple[FloatTensor, FloatTensor]:
        """``pairs (N, 2)`` -> label logits ``(N, num_labels)`` and the entities' states ``(2N, D)``: the mean
        last hidden state over the head's tokens (rows ``0..N-1``), then over the tail's."""
        ids, mask, mentions, side = self.sequences(pairs)
        hidden = self.hidden(ids, mask, mentions)
        states = torch.cat([mean_pool(hidden, side == 0), mean_pool(hidden, side == 1)])
        return self.head(mean_pool(hidden, mask)), states


def evaluate_task(
    model: EncoderClassifier, task: Any, split: str, batch_size: int = 256
) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on ``split``."""
    model.eval()
    pairs, gold = task.pairs[split], task.labels[split]
    device = next(model.parameters()).device
    with torch.no_grad():
        predicted = torch.cat(
            [model(p.to(device)).argmax(-1).cpu() for p in pairs.split(batch_size)]
        )
    return {
        "accuracy": float((predicted == gold).float().mean()),
        "macro_f1": macro_f1(predicted, gold, task.num_labels),
        "examples": len(gold),
    }


class _Distill(nn.Module):
    """A term of the distillation engine (``fitnet`` or ``rkd``, on ``h``) between the language model's entity
    states and the KGE's vectors of the same entities (those the KGE knows)."""

    def __init__(self, spec: dict[str, Any], table: FloatTensor, known: torch.Tensor) -> None:
        super().__init__()
        from kgdistill.losses import LOSSES

        spec = dict(spec)
        name, self.weight = spec.pop("loss"), float(spec.pop("weight", 1.0))
        if name == "fitnet":
            self.term = LOSSES.get(name)(fields=["h"], **spec)
        elif name == "rkd":
            self.term = LOSSES.get(name)(field="h", **spec)
        else:
            raise ConfigError(f"config key 'distill.loss': '{name}' is not fitnet or rkd")
        self.register_buffer("table", table.float().clone())
        self.register_buffer("known", known.clone())
        self.ready = False

    def forward(self, states: FloatTensor, pairs: LongTensor) -> FloatTensor:
        """``states (2N, D)`` of :meth:`RelationClassifier.forward_states` for ``pairs (N, 2)`` -> the weighted
        term (a scalar)."""
        from kgdistill.data.batching import Batch
        from kgdistill.models.base import ModelOutput

        ents = torch.cat([pairs[:, 0], pairs[:, 1]])
        keep = self.known[ents]
        student = ModelOutput(scores=states.new_zeros(0), h=states[keep])
        teacher = ModelOutput(scores=states.new_zeros(0), h=self.table[ents[keep]])
        if not self.ready:
            self.term.setup(student, teacher)
            self.term.to(states.device)
            self.ready = True
        if not bool(keep.any()):
            return states.sum() * 0.0
        return self.weight * self.term(student, teacher, Batch(pairs))


def fit_task(
    model: EncoderClassifier,
    task: Any,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 5e-5,
    head_lr: float = 1e-3,
    seed: int = 0,
    distill: dict[str, Any] | None = None,
    teacher_table: FloatTensor | None = None,
    teacher_known: torch.Tensor | None = None,
) -> list[dict[str, float]]:
    """Fine-tune on the training examples (AdamW, cross-entropy; the head, the gate and the projection at
    ``head_lr``, the encoder and a trainable KGE at ``lr``); validation metrics after each epoch.

    ``distill``: ``{"loss": "fitnet" | "rkd", "weight": w, ...}`` adds the distillation form of KG -> LM: the
    language model's entity states (the mean states of the head's and the tail's tokens) are pulled towards the
    KGE's vectors ``teacher_table (E, d_k)`` of the same entities (``teacher_known``: those it has) by that term
    of the distillation engine (FitNet's learned projection, or RKD's distances and angles).
    """
    term = None
    if distill is not None:
        if not isinstance(model, RelationClassifier):
            raise ConfigError(
                "config key 'distill': the distillation form pulls entity-pair states, which only the "
                "relation task has"
            )
        if teacher_table is None:
            raise ConfigError(
                "config key 'distill': the distillation form needs the KGE's table (teacher_table)"
            )
        known = teacher_known
        if known is None:
            known = torch.ones(len(teacher_table), dtype=torch.bool)
        term = _Distill(distill, teacher_table, known)
    device = next(model.parameters()).device
    pairs, labels = task.pairs["train"], task.labels["train"]
    if term is not None:
        term.to(device)
        with torch.no_grad():  # the term's projection, from the widths of a probe batch
            probe = pairs[:2].to(device)
            term(model.forward_states(probe)[1], probe)
    fast_names = ("head.", "injection.gate", "injection.proj")
    fast = [p for n, p in model.named_parameters() if n.startswith(fast_names)]
    fast += [] if term is None else list(term.parameters())
    slow = [
        p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(fast_names)
    ]
    opt = torch.optim.AdamW([{"params": fast, "lr": head_lr}, {"params": slow, "lr": lr}])
    g = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(pairs), generator=g)
        total, kd, steps = 0.0, 0.0, math.ceil(len(pairs) / batch_size)
        for rows in perm.split(batch_size):
            batch = pairs[rows].to(device)
            logits, states = model.forward_states(batch)
            loss = F.cross_entropy(logits, labels[rows].to(device))
            if term is not None:
                extra = term(states, batch)
                loss = loss + extra
                kd += float(extra.detach())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            total += float(loss.detach())
        metrics = {
            "epoch": epoch + 1,
            "loss": total / steps,
            **({"distill": kd / steps} if term is not None else {}),
            **evaluate_task(model, task, "valid"),
        }
        log.info("text task epoch %d: %s", epoch + 1, metrics)
        history.append(metrics)
    return history
