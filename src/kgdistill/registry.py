"""A tiny generic registry: names -> builders, with helpful errors.

``DATASETS``, ``MODELS``, ``LOSSES`` and ``TEACHERS`` are instances. Names are matched case-insensitively and
with ``-`` and ``_`` treated alike. ``build(spec, **context)`` takes a name or a mapping ``{"name": ..., **kwargs}``
and checks the kwargs against the builder's signature, so a wrong config key fails with a message naming it.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from pydantic import ConfigDict, ValidationError, create_model

from kgdistill.errors import ConfigError

__all__ = ["Registry", "check_kwargs"]

T = TypeVar("T")


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _signature_target(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The callable whose annotations describe ``fn``'s keyword arguments (``__init__`` for a class)."""
    return fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]


def _annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    target = _signature_target(fn)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # an annotation that cannot be resolved at run time is not validated
        return {}


def _describe(err: ValidationError, where: str) -> str:
    """One line per mistake, each naming the config key ``where.<name>``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (where, *e["loc"]))
        got = repr(e.get("input"))
        got = got if len(got) <= 80 else got[:77] + "..."
        lines.append(f"config key '{loc}': {e['msg']} (got {got})")
    return "; ".join(lines)


def check_kwargs(
    fn: Callable[..., Any],
    kwargs: Mapping[str, Any],
    *,
    where: str,
    context: Mapping[str, Any] | None = None,
    also: Iterable[str] = (),
) -> dict[str, Any]:
    """Check ``kwargs`` (config values) against ``fn``'s signature: names, then types and ranges.

    ``also``: keys of the same section that another function checks (a model's feature options): named among the
    known keys and the suggestions of an unknown key's message, never passed to ``fn``.

    Names: every key must be a keyword parameter of ``fn`` that the caller does not supply (``context``), and
    every parameter without a default must be given.
    Types: each value is validated by pydantic against the parameter's annotation (``int``, ``float``,
    ``Literal[...]``, ``Annotated[int, Field(ge=1)]``, ...), with pydantic's usual coercions (``"3"`` -> 3).

    Returns:
        The validated (coerced) keyword arguments.

    Raises:
        ConfigError: one message naming ``where.key`` for every unknown key or wrong value.
    """
    params = inspect.signature(fn).parameters
    context = context or {}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = [n for n in params if n not in context and n != "self"] + list(also)
        for key in kwargs:
            if key not in params or key in context:
                hint = difflib.get_close_matches(key, accepted, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigError(
                    f"config key '{where}.{key}' is not a parameter of {where}{extra}; "
                    f"known keys: {', '.join(sorted(accepted))}"
                )
    required = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and n not in context
        and n != "self"
    ]
    for key in required:
        if key not in kwargs:
            raise ConfigError(f"config key '{where}.{key}' is missing")
    hints = _annotations(fn)
    fields: dict[str, Any] = {
        key: (hints.get(key, Any), ...) for key in kwargs if key in params and key in hints
    }
    if not fields:
        return dict(kwargs)
    model = create_model(  # type: ignore[call-overload]
        f"{where}_kwargs",
        __config__=ConfigDict(arbitrary_types_allowed=True),
        **fields,
    )
    try:
        validated = model.model_validate({k: kwargs[k] for k in fields})
    except ValidationError as e:
        raise ConfigError(_describe(e, where)) from None
    return {**kwargs, **{k: getattr(validated, k) for k in fields}}


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
        kwargs = check_kwargs(fn, kwargs, where=where or self.kind, context=context)  # type: ignore[arg-type]
        return fn(**context, **kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _norm(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())
