"""Request bodies -> id rows for the model, every problem an :class:`ApiError` naming the field at fault.

Labels, ids and times are resolved exactly as ``kgdistill predict`` does (:meth:`Predictor.query
<kgdistill.predict.Predictor.query>`): a time is mapped to the model's time bin by the run's own time protocol.
"""

from __future__ import annotations

from typing import Any

from kgdistill.errors import QueryError
from kgdistill.predict import Predictor, Query
from kgdistill.serve.schemas import QueryIn, QueryOut, TripleIn

__all__ = ["ApiError", "query_out", "resolve_query", "resolve_triple"]


class ApiError(Exception):
    """An error answered to the client: HTTP ``status`` and the body of :class:`~kgdistill.serve.schemas.ErrorOut`.

    Args:
        field: the part of the request at fault (``queries.3.head``, ``k``, ``body``, ``run``).
        suggestions: close labels the client may have meant.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        suggestions: tuple[str, ...] | list[str] = (),
        kind: str = "invalid_request",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.suggestions = list(suggestions)
        self.kind = kind

    def body(self) -> dict[str, Any]:
        message = f"{self.field}: {self.message}" if self.field else self.message
        error = {
            "status": self.status,
            "type": self.kind,
            "message": message,
            "field": self.field,
            "suggestions": self.suggestions,
        }
        return {"error": error}


def _from(e: QueryError, body: QueryIn, prefix: str) -> ApiError:
    """A :class:`QueryError` as a 422 naming the field the client actually sent (``head_id`` for an id)."""
    name = e.field or "query"
    if getattr(body, name, None) is None and getattr(body, f"{name}_id", None) is not None:
        name = f"{name}_id"
    return ApiError(
        422, str(e), field=prefix + name, suggestions=e.suggestions, kind="unknown_or_invalid"
    )


def _one(body: QueryIn, name: str, prefix: str) -> str | int | None:
    """The label (``name``) or the id (``name_id``) given, never both."""
    label, ident = getattr(body, name), getattr(body, f"{name}_id")
    if label is not None and ident is not None:
        raise ApiError(422, f"give {name} or {name}_id, not both", field=prefix + name)
    return label if label is not None else ident


def _time(body: QueryIn) -> str | None:
    return None if body.time is None else str(body.time)


def resolve_query(p: Predictor, body: QueryIn, prefix: str = "") -> Query:
    """The :class:`~kgdistill.predict.Query` of a body (``prefix``: where it sits, e.g. ``queries.3.``)."""
    given = [n for n in ("head", "head_id", "tail", "tail_id") if getattr(body, n) is not None]
    if len(given) != 1:
        raise ApiError(
            422,
            "give exactly one of head, head_id, tail, tail_id"
            + (f" (got {', '.join(given)})" if given else ""),
            field=prefix + (given[1] if len(given) > 1 else "head"),
        )
    relation = _one(body, "relation", prefix)
    if relation is None:
        raise ApiError(422, "give relation or relation_id", field=prefix + "relation")
    side = given[0].removesuffix("_id")
    anchor = getattr(body, given[0])
    try:
        return p.query(
            relation,
            head=anchor if side == "head" else None,
            tail=anchor if side == "tail" else None,
            time=_time(body),
            time_id=body.time_id,
        )
    except QueryError as e:
        raise _from(e, body, prefix) from None


def query_out(p: Predictor, q: Query) -> QueryOut:
    """The echo of a resolved query."""
    return QueryOut(
        direction=q.direction,
        entity=q.anchor,
        entity_id=q.row[0],
        relation=q.relation,
        relation_id=q.row[1] % len(p.relations),
        time=q.time,
        time_id=q.row[3] if len(q.row) > 3 else None,
    )


def resolve_triple(p: Predictor, body: TripleIn, prefix: str = "") -> tuple[int, ...]:
    """The id row ``(h, r, t[, time])`` of a fact to score."""
    row = []
    for name, index in (("head", p.entities), ("relation", p.relations), ("tail", p.entities)):
        key = _one(body, name, prefix)
        if key is None:
            raise ApiError(422, f"give {name} or {name}_id", field=prefix + name)
        try:
            row.append(index.resolve(key))
        except QueryError as e:
            raise _from(e.at(name), body, prefix) from None
    try:
        if p.temporal:
            row.append(p.time_id(_time(body), body.time_id))
        elif body.time is not None or body.time_id is not None:
            raise QueryError("this model is static: it takes no time", field="time")
    except QueryError as e:
        raise _from(e, body, prefix) from None
    return tuple(row)
