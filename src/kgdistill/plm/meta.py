"""What the text models' feature classes share: the checkpoint record of their token tables and the
zero-filled placeholder a checkpoint's state dict fills."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from kgdistill.plm.contexts import ContextTokens
from kgdistill.plm.tokens import TokenTable

__all__ = ["TokenFeatures"]

T = TypeVar("T", bound="TokenFeatures")


class TokenFeatures:
    """Mixin of a frozen dataclass with ``config``, ``special``, ``report``, the token tables named in
    :attr:`TABLES`, an optional ``times`` table, the integers named in :attr:`SIZES` and optional ``contexts``."""

    #: the token tables every instance has
    TABLES: ClassVar[tuple[str, ...]]
    #: integer settings recorded as they are
    SIZES: ClassVar[tuple[str, ...]]

    config: dict[str, Any]
    special: dict[str, Any]
    report: dict[str, Any]
    times: TokenTable | None
    contexts: ContextTokens | None

    def _extra_meta(self) -> dict[str, Any]:
        """Further keys of :meth:`meta` (informative: :meth:`placeholder` does not read them)."""
        return {}

    def meta(self) -> dict[str, Any]:
        """What a checkpoint records to rebuild the model without tokenizer or weights."""
        shapes = {k: list(getattr(self, k).ids.shape) for k in self.TABLES}
        if self.times is not None:
            shapes["times"] = list(self.times.ids.shape)
        return {
            **self._extra_meta(),
            "config": self.config,
            "special": self.special,
            **{k: getattr(self, k) for k in self.SIZES},
            "shapes": shapes,
            "report": self.report,
            **({"contexts": self.contexts.meta()} if self.contexts is not None else {}),
        }

    @classmethod
    def placeholder(cls: type[T], meta: dict[str, Any]) -> T:
        """Zero token tables of the shapes in ``meta`` (from :meth:`meta`); a state dict fills them."""
        shapes = meta["shapes"]
        times = shapes.get("times")
        return cls(  # type: ignore[call-arg]
            config=dict(meta["config"]),
            **{k: TokenTable.zeros(*shapes[k]) for k in cls.TABLES},
            times=TokenTable.zeros(*times) if times else None,
            special=dict(meta["special"]),
            **{k: int(meta[k]) for k in cls.SIZES},
            contexts=ContextTokens.placeholder(meta["contexts"]) if "contexts" in meta else None,
        )
