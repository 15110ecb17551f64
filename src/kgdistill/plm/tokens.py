"""Token tables: texts tokenised once (no special tokens), cut to a budget and right-padded into tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["TokenTable", "tokenize"]


@dataclass(frozen=True)
class TokenTable:
    """Token ids of some texts without special tokens, right-padded.

    Attributes:
        ids: ``(N, L)`` int32 token ids (``pad`` after the end).
        lengths: ``(N,)`` int32 kept tokens per text.
        truncated: texts that were longer than their budget (cut).
    """

    ids: torch.Tensor
    lengths: torch.Tensor
    truncated: int = 0

    @classmethod
    def zeros(cls, n: int, width: int) -> TokenTable:
        return cls(torch.zeros(n, width, dtype=torch.int32), torch.zeros(n, dtype=torch.int32))

    @classmethod
    def of(cls, token_lists: Sequence[Sequence[int]], budget: int, pad: int) -> TokenTable:
        """Cut every list to ``budget`` tokens and pad them into one table."""
        kept = [list(t[:budget]) for t in token_lists]
        width = max([1, *map(len, kept)])
        ids = torch.full((len(kept), width), pad, dtype=torch.int32)
        for i, t in enumerate(kept):
            ids[i, : len(t)] = torch.tensor(t, dtype=torch.int32)
        lengths = torch.tensor([len(t) for t in kept], dtype=torch.int32)
        return cls(ids, lengths, sum(len(t) > budget for t in token_lists))


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens and uncut."""
    if not texts:
        return []
    out = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
    return [list(ids) for ids in out["input_ids"]]
