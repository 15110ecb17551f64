"""KG -> LM: knowledge-graph embeddings injected into a language model's hidden states at entity mentions.

ERNIE-style knowledge fusion (Zhang et al. 2019, https://arxiv.org/abs/1905.07129), reduced to its core: after
layer ``layer`` of a Hugging Face encoder, every token that mentions an entity gets the entity's KGE vector,
projected to the encoder's width and gated per dimension::

    p = W e + b                          e: the mentioned entity's KGE vector (d_k), W: (D, d_k)
    g = sigmoid(V [h; p] + c)            h: the token's hidden state (D), V: (D, 2D)
    h' = h + g * p                       at mention positions only; every other position is left as it is

The gate's bias starts at ``gate_bias`` (-2: about 0.12 of the projection gets through at first), so training
starts from the plain language model. The KGE table is an ``nn.Embedding`` frozen unless ``train_kge``; a frozen
table stays bit-identical through training (it has no gradient, so no optimiser touches it).

Mentions are given per token: ``mentions (B, L)`` holds the entity id a token belongs to, or ``-1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from kgdistill.errors import ConfigError
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["KnowledgeInjection", "encoder_layers"]


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a Hugging Face encoder (BERT, RoBERTa, MPNet, ELECTRA, ...: ``encoder.layer``).

    Raises:
        ConfigError: the model has no such list (names its class).
    """
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(
            f"knowledge injection needs an encoder with an 'encoder.layer' list of layers (BERT, RoBERTa, "
            f"MPNet, ...); {type(model).__name__} has none"
        )
    return layers


class KnowledgeInjection(nn.Module):
    """Inject KGE vectors into ``encoder``'s hidden states at entity mentions (see the module docstring).

    Args:
        encoder: a Hugging Face encoder (``encoder.layer`` layers); it stays a submodule of this module.
        entity_table: ``(E, d_k)`` KGE entity vectors (rows in the text task's entity ids).
        layer: the layer after which knowledge is added (0-based; negative counts from the end).
        train_kge: fine-tune the KGE table too (else it is frozen).
        gate_bias: the gate's initial bias.
    """

    def __init__(
        self,
        encoder: nn.Module,
        entity_table: FloatTensor,
        *,
        layer: int = -1,
        train_kge: bool = False,
        gate_bias: float = -2.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        layers = encoder_layers(encoder)
        if not -len(layers) <= layer < len(layers):
            raise ConfigError(
                f"config key 'layer': {layer} is not a layer of the encoder's {len(layers)}"
            )
        self.layer = layer % len(layers)
        width = int(encoder.config.hidden_size)
        self.kge = nn.Embedding.from_pretrained(entity_table.float().clone(), freeze=not train_kge)
        self.proj = nn.Linear(entity_table.shape[1], width)
        self.gate = nn.Linear(2 * width, width)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, gate_bias)
        self._mentions: LongTensor | None = None
        layers[self.layer].register_forward_hook(self._inject)

    def fuse(self, hidden: FloatTensor, mentions: LongTensor) -> FloatTensor:
        """``hidden (B, L, D)`` with knowledge added where ``mentions (B, L) >= 0``; other positions unchanged."""
        at = mentions >= 0
        if not bool(at.any()):
            return hidden
        h = hidden[at]  # (M, D)
        p = self.proj(self.kge(mentions[at])).to(h.dtype)
        g = torch.sigmoid(self.gate(torch.cat([h, p], dim=-1)))
        out = hidden.clone()
        out[at] = h + g * p
        return out

    def _inject(self, module: nn.Module, args: Any, output: Any) -> Any:
        if self._mentions is None:
            return output
        if isinstance(output, tuple):
            return (self.fuse(output[0], self._mentions), *output[1:])
        return self.fuse(output, self._mentions)

    @contextmanager
    def mentioning(self, mentions: LongTensor | None) -> Iterator[None]:
        """Inside the block, the encoder's forward passes inject knowledge at ``mentions (B, L)``."""
        self._mentions = mentions
        try:
            yield
        finally:
            self._mentions = None

    def forward(
        self, input_ids: LongTensor, attention_mask: torch.Tensor, mentions: LongTensor | None
    ) -> FloatTensor:
        """``input_ids``, ``attention_mask``, ``mentions`` ``(B, L)`` -> the last hidden states ``(B, L, D)``."""
        if mentions is not None and mentions.shape != input_ids.shape:
            raise ValueError(
                f"mentions {tuple(mentions.shape)} must have the shape of the tokens {tuple(input_ids.shape)}"
            )
        with self.mentioning(mentions):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
