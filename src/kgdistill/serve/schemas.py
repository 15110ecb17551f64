"""Request and response bodies of ``kgdistill serve`` (pydantic; FastAPI validates requests and documents
both in ``/openapi.json``).

A query names each part by label (``head``, ``relation``, ``tail``: strings) or by id (``head_id``, ...:
integers); a time is a year (``1990`` or ``"1990"``), a date (``"1990-05-01"``), ``"since 1990"`` or a time
label the model knows (``time``), or a time id (``time_id``). Unknown fields are refused, so a typo such as
``"haed"`` is an error naming it rather than silently ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

__all__ = [
    "AnswerOut",
    "BatchRequest",
    "BatchResponse",
    "ErrorBody",
    "ErrorOut",
    "QueryIn",
    "QueryOut",
    "RunInfo",
    "ScoreOut",
    "ScoreRequest",
    "ScoreResponse",
    "TopKRequest",
    "TopKResponse",
    "TripleIn",
]

_STRICT = ConfigDict(extra="forbid")


class _Parts(BaseModel):
    model_config = _STRICT

    relation: str | None = Field(default=None, examples=["isMarriedTo"])
    relation_id: NonNegativeInt | None = None
    time: str | int | None = Field(
        default=None,
        description="A year, a date (YYYY-MM-DD), 'since YEAR' or a time label; temporal models only.",
        examples=["1990"],
    )
    time_id: NonNegativeInt | None = None


class QueryIn(_Parts):
    """``(head, relation, ?)`` (give ``head`` or ``head_id``) or ``(?, relation, tail)`` (``tail``/``tail_id``)."""

    head: str | None = Field(default=None, examples=["<Christopher_Guest>"])
    head_id: NonNegativeInt | None = None
    tail: str | None = None
    tail_id: NonNegativeInt | None = None


class TopKRequest(QueryIn):
    """One query and how many answers to return."""

    k: int = Field(default=10, ge=1, description="Answers to return, 1..number of entities.")
    exclude_known: bool = Field(
        default=False, description="Leave out answers already known in training (filtered answers)."
    )


class BatchRequest(BaseModel):
    """Several queries answered in one request, with the same ``k`` and filtering."""

    model_config = _STRICT

    queries: list[QueryIn] = Field(min_length=1)
    k: int = Field(default=10, ge=1)
    exclude_known: bool = False


class TripleIn(QueryIn):
    """A fact ``(head, relation, tail[, time])`` to score: every part by label or id."""


class ScoreRequest(BaseModel):
    """Facts to score."""

    model_config = _STRICT

    triples: list[TripleIn] = Field(min_length=1)


class QueryOut(BaseModel):
    """The query as understood: labels and ids, and the time label its time mapped to."""

    direction: str = Field(description="'tail': (head, relation, ?); 'head': (?, relation, tail).")
    entity: str
    entity_id: int
    relation: str
    relation_id: int
    time: str | None = None
    time_id: int | None = None


class AnswerOut(BaseModel):
    """One answer, best first; ``known`` is ``null`` when the run's training facts are not loaded."""

    rank: int
    entity: str
    id: int
    score: float
    known: bool | None = None


class TopKResponse(BaseModel):
    run: str
    query: QueryOut
    answers: list[AnswerOut]


class _Result(BaseModel):
    query: QueryOut
    answers: list[AnswerOut]


class BatchResponse(BaseModel):
    run: str
    results: list[_Result]


class ScoreOut(BaseModel):
    """A fact's score (the score its tail has among the answers of ``(head, relation, ?)``)."""

    head: str
    head_id: int
    relation: str
    relation_id: int
    tail: str
    tail_id: int
    time: str | None = None
    time_id: int | None = None
    score: float
    known: bool | None = None


class ScoreResponse(BaseModel):
    run: str
    scores: list[ScoreOut]


class RunInfo(BaseModel):
    """A served run."""

    name: str
    model: str
    temporal: bool
    entities: int
    relations: int
    times: int
    time_range: list[str] | None = Field(default=None, description="First and last time label.")
    known_facts: bool = Field(description="Whether answers can be marked / filtered as known.")
    parameters: int


class ErrorBody(BaseModel):
    status: int
    type: str
    message: str
    field: str | None = Field(default=None, description="The part of the request at fault.")
    suggestions: list[str] = Field(default_factory=list)
    id: str | None = Field(default=None, description="Error id of a server error, as logged.")


class ErrorOut(BaseModel):
    error: ErrorBody
