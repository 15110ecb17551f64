"""Tensor aliases and column constants shared by every module."""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "HEAD",
    "REL",
    "TAIL",
    "TIME",
    "BoolTensor",
    "FloatTensor",
    "LongTensor",
    "Side",
    "TieMode",
]

#: Columns of a fact / query tensor ``(n, 3|4)``: head, relation, tail, time id.
HEAD, REL, TAIL, TIME = 0, 1, 2, 3

FloatTensor = torch.Tensor
LongTensor = torch.Tensor
BoolTensor = torch.Tensor

TieMode = Literal["optimistic", "pessimistic", "realistic"]
Side = Literal["head", "tail", "both"]
