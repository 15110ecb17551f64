"""A tiny generic registry: names -> builders, with helpful errors.

``DATASETS``, ``MODELS``, ``LOSSES`` and ``TEACHERS`` are instances. Names are matched case-insensitively and
with ``-`` and ``_`` treated alike. ``build(spec, **context)`` takes a name or a mapping ``{"name": ..., **kwargs}``
and checks the kwargs against the builder's signature, so a wrong config key fails with a message naming it.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from kgdistill.errors import ConfigError

__all__ = ["Registry", "check_kwargs"]

T = TypeVar("T")


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def check_kwargs(
    fn: Callable[..., Any],
    kwargs: Mapping[str, Any],
    *,
    where: str,
    context: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`ConfigError` naming ``where.key`` for every key ``fn`` does not accept."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n in params if n not in (context or {})]
    for key in kwargs:
        if key not in params or key in (context or {}):
            hint = difflib.get_close_matches(key, accepted, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(
                f"config key '{where}.{key}' is not a parameter of {where}{extra}; "
                f"known keys: {', '.join(sorted(accepted))}"
            )


class Registry(Generic[T]):
    """Named builders of one kind (models, losses, datasets, teachers)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; registering a name twice raises."""
        key = _norm(name)

        def deco(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """The builder registered as ``name``; an unknown name lists the known ones."""
        key = _norm(name)
        if key not in self._items:
            hint = difflib.get_close_matches(key, list(self._items), n=1)
            extra = f" Did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'.{extra} Known: {', '.join(self.names())}"
            )
        return self._items[key]

    def build(
        self, spec: str | Mapping[str, Any], *, where: str | None = None, **context: Any
    ) -> Any:
        """Call the builder named in ``spec`` with the spec's kwargs plus ``context``."""
        if isinstance(spec, str):
            name, kwargs = spec, {}
        else:
            kwargs = dict(spec)
            name = kwargs.pop("name")
        fn = self.get(name)
        check_kwargs(fn, kwargs, where=where or self.kind, context=context)  # type: ignore[arg-type]
        return fn(**context, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _norm(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
