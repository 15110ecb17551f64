"""Small helpers shared by every command module of the CLI."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from kgdistill.errors import KGDistillError

__all__ = ["data_root_option", "friendly"]

F = TypeVar("F", bound=Callable[..., Any])


def friendly(interrupted: str) -> Callable[[F], F]:
    """A decorator: a :class:`KGDistillError` prints ``error: <message>`` and exits 2 (no traceback); Ctrl-C
    prints ``interrupted: <interrupted>`` and exits 130."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except KGDistillError as e:
                click.echo(f"error: {e}", err=True)
                sys.exit(2)
            except KeyboardInterrupt:
                click.echo(f"interrupted: {interrupted}", err=True)
                sys.exit(130)

        return wrapper  # type: ignore[return-value]

    return deco


#: ``--data-root DIR``, the option of every command that reads datasets
data_root_option = click.option(
    "--data-root", default=None, help="Folder holding the datasets (default: $KGDISTILL_DATA)."
)
