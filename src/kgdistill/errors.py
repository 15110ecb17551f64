"""User-facing errors.

Every problem caused by the user's input (a malformed row, an unknown id, a config key that does not exist, a
corrupt checkpoint) is raised as a :class:`KGDistillError` whose message names the file and line, or the config
key. The CLI prints the message and exits with status 2, without a traceback; the Python API lets it propagate.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "GraphMismatchError",
    "KGDistillError",
    "QueryError",
    "TrainingDiverged",
]


class KGDistillError(Exception):
    """Base class of all errors that are the input's fault, not a bug in kgdistill."""


class DataError(KGDistillError):
    """A data file is missing or malformed, or refers to an id that is not in the vocabulary."""

    def __init__(
        self, message: str, *, path: object | None = None, line: int | None = None
    ) -> None:
        where = ""
        if path is not None:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class ConfigError(KGDistillError):
    """A configuration key is unknown, has the wrong type, or an impossible value."""


class CheckpointError(KGDistillError):
    """A checkpoint is missing, truncated, corrupt, or does not match what it is loaded into."""


class GraphMismatchError(KGDistillError):
    """A model is evaluated on a graph other than the one it was trained on (other sizes or labels)."""


class QueryError(KGDistillError):
    """A query names something the model does not know (an entity, a relation, a time) or asks the impossible.

    Attributes:
        field: the part of the query at fault (``head``, ``relation``, ``time``, ``k``, ...), or ``None``.
        suggestions: close labels the user may have meant (an unknown entity or relation).
    """

    def __init__(
        self, message: str, *, field: str | None = None, suggestions: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.field = field
        self.suggestions = tuple(suggestions)

    def at(self, field: str) -> QueryError:
        """The same error, naming ``field`` (kept when already set)."""
        return QueryError(str(self), field=self.field or field, suggestions=self.suggestions)


class TrainingDiverged(KGDistillError):
    """An epoch's mean loss is not finite (the learning rate is too high for the model, most often)."""
