"""A temporal text task: the ExpTime yes / no / unsure forecasting questions (TimeLlama, arXiv 2310.01074) over
ICEWS events, read by a language model with or without a temporal KGE injected at the entity mentions.

Each example of ``eval_dataset.json`` (a JSON list of ``{"instruction", "input", "output"}``) asks whether an
event between ICEWS actors will happen on a date, after a document narrating earlier events; ``output`` starts
with the answer (``Yes``, ``No``, or ``Not sure`` / ``Unsure``) and then explains it. The task:

* **labels**: the answer's first words (0 yes, 1 no, 2 unsure); an output that starts otherwise is counted and
  left out (the report gives the count and the first such line);
* **input**: ``[CLS] question [SEP] document [SEP]`` (the question, with the answer instructions cut, then the
  document, truncated to the window); every token inside an ICEWS entity name (the graph's labels, matched
  verbatim, longest first, on word boundaries) mentions that entity;
* **split**: the entities named in the questions are drawn in a seeded order and held out until the questions
  naming one reach ``test_share`` of the examples: those questions are the test split, so each test question is
  about an actor no training or validation question names (a document may still mention it); ``valid_share``
  of the rest is the validation split.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgdistill.errors import DataError
from kgdistill.kglm.classifier import EncoderClassifier
from kgdistill.models.plm import mean_pool
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["ANSWERS", "ForecastClassifier", "ForecastTask", "forecast_task"]

#: label id -> answer
ANSWERS = ("yes", "no", "unsure")
_ANSWER = re.compile(r"\s*(yes|no|not sure|unsure)\b", re.IGNORECASE)
_CUT = re.compile(
    r"\s*(please answer|give a simple|answer with|then explain).*$", re.IGNORECASE | re.DOTALL
)
_QUESTION = re.compile(r"^Given the following document,\s*", re.IGNORECASE)


@dataclass
class ForecastTask:
    """The tokenised examples and their split (see the module docstring).

    Attributes:
        ids / mask / mentions: ``(N, L)`` token ids, attention mask, and the entity id each token mentions
            (``-1`` for none), for every parsed example.
        answers: ``(N,)`` label ids (:data:`ANSWERS`).
        rows: split -> ``(n,)`` example rows.
        entities: the graph's entity labels (what a mention's id means).
        held_out: the held-out actors' entity ids (sorted).
        report: counts, the split rule and the mention coverage.
    """

    ids: LongTensor
    mask: torch.Tensor
    mentions: LongTensor
    answers: LongTensor
    rows: dict[str, LongTensor]
    entities: list[str]
    held_out: list[int] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(ANSWERS)

    @property
    def pairs(self) -> dict[str, LongTensor]:
        """split -> ``(n, 1)`` example rows: the inputs :func:`~kgdistill.kglm.classifier.fit_task` batches."""
        return {s: r[:, None] for s, r in self.rows.items()}

    @property
    def labels(self) -> dict[str, LongTensor]:
        return {s: self.answers[r] for s, r in self.rows.items()}


def _answer(output: str) -> int | None:
    m = _ANSWER.match(output)
    if m is None:
        return None
    word = m.group(1).lower()
    return 0 if word == "yes" else 1 if word == "no" else 2


class _Names:
    """Verbatim entity names in a text, longest first at each word start, on word boundaries."""

    def __init__(self, labels: list[str]) -> None:
        self.index = {x: i for i, x in enumerate(labels)}
        self.by_first: dict[str, list[str]] = {}
        for name in sorted((x for x in labels if len(x) > 2), key=len, reverse=True):
            first = _WORD.match(name)  # names are found from their first word
            if first is not None and first.start() == 0:
                self.by_first.setdefault(first.group(), []).append(name)

    def spans(self, text: str) -> list[tuple[int, int, int]]:
        """``(start, end, entity id)`` of each mention, left to right, never overlapping."""
        out: list[tuple[int, int, int]] = []
        end = 0
        for m in _WORD.finditer(text):
            if m.start() < end:
                continue
            for name in self.by_first.get(m.group(), ()):
                stop = m.start() + len(name)
                if text.startswith(name, m.start()) and (
                    stop == len(text) or not (text[stop].isalnum() or text[stop] == "_")
                ):
                    out.append((m.start(), stop, self.index[name]))
                    end = stop
                    break
        return out


_WORD = re.compile(r"\w+")


def forecast_task(
    path: str | Path,
    entity_labels: list[str],
    tokenizer: Any,
    *,
    max_length: int = 256,
    test_share: float = 0.2,
    valid_share: float = 0.1,
    seed: int = 0,
) -> ForecastTask:
    """Read, label, tokenise and split the ExpTime questions of ``path`` (see the module docstring).

    Args:
        entity_labels: the temporal graph's entity labels (ICEWS14's names): mentions get their ids.
        tokenizer: a fast Hugging Face tokenizer (character offsets).

    Raises:
        DataError: the file is not a JSON list of examples with the three fields (names the file and the
            example), or no example has a parsable answer.
    """
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file: {e}") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of examples")
    names = _Names(list(entity_labels))
    questions, documents, answers, named = [], [], [], []
    unparsed: list[str] = []
    for n, rec in enumerate(records):
        if not isinstance(rec, dict) or not all(
            isinstance(rec.get(k), str) for k in ("instruction", "input", "output")
        ):
            raise DataError(
                f"{path}: example {n} lacks a string 'instruction', 'input' or 'output'"
            )
        answer = _answer(rec["output"])
        if answer is None:
            unparsed.append(rec["output"][:60])
            continue
        ask = _QUESTION.sub("", rec["instruction"].strip())
        question = ask[: ask.index("?") + 1] if "?" in ask else ask  # the answer instructions cut
        questions.append(question)
        documents.append(rec["input"].strip().strip('"'))
        answers.append(answer)
        named.append({e for _, _, e in names.spans(question)})
    if not answers:
        raise DataError(f"{path}: no example starts its output with yes, no or unsure")
    enc = tokenizer(
        questions,
        documents,
        truncation="only_second",
        max_length=max_length,
        padding="max_length",
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    mentions = torch.full_like(enc["input_ids"], -1)
    for row, (q, d) in enumerate(zip(questions, documents, strict=True)):
        spans = {0: names.spans(q), 1: names.spans(d)}
        seq = enc.sequence_ids(row)
        for pos, ((a, b), which) in enumerate(
            zip(enc["offset_mapping"][row].tolist(), seq, strict=True)
        ):
            if which is None or a == b:
                continue
            for s, e, ent in spans[which]:
                if s <= a and b <= e:
                    mentions[row, pos] = ent
                    break
    rows, held = _split(named, len(entity_labels), test_share, valid_share, seed)
    labels = torch.tensor(answers, dtype=torch.long)
    task = ForecastTask(
        ids=enc["input_ids"],
        mask=enc["attention_mask"].bool(),
        mentions=mentions,
        answers=labels,
        rows=rows,
        entities=list(entity_labels),
        held_out=sorted(held),
    )
    task.report.update(
        file=path.name,
        examples=len(records),
        parsed=len(answers),
        unparsed=len(unparsed),
        unparsed_first=unparsed[0] if unparsed else None,
        answers={a: int((labels == i).sum()) for i, a in enumerate(ANSWERS)},
        split={s: len(r) for s, r in rows.items()},
        held_out_entities=len(held),
        rule="test questions each name a held-out entity; no training or validation question names one",
        with_mention=int((mentions >= 0).any(1).sum()),
        mentioned_entities=int(mentions[mentions >= 0].unique().numel()),
        max_length=max_length,
        truncated=int(enc["attention_mask"][:, -1].sum()),
        seed=seed,
    )
    return task


def _spans(
    pattern: re.Pattern[str], index: dict[str, int], text: str
) -> list[tuple[int, int, int]]:
    return [(m.start(), m.end(), index[m.group(1)]) for m in pattern.finditer(text)]


def _split(
    named: list[set[int]], num_entities: int, test_share: float, valid_share: float, seed: int
) -> tuple[dict[str, LongTensor], set[int]]:
    """Held-out entities in a seeded order until their questions reach ``test_share``; the rest split."""
    if not 0 < test_share < 1 or not 0 <= valid_share < 1:
        raise DataError(
            f"forecast split: test_share {test_share} / valid_share {valid_share} not in (0, 1)"
        )
    g = torch.Generator().manual_seed(seed)
    candidates = sorted(set().union(*named))
    order = [candidates[i] for i in torch.randperm(len(candidates), generator=g).tolist()]
    held: set[int] = set()
    target = test_share * len(named)
    in_test = torch.zeros(len(named), dtype=torch.bool)
    for e in order:
        if int(in_test.sum()) >= target:
            break
        held.add(e)
        in_test |= torch.tensor([e in s for s in named])
    rest = (~in_test).nonzero()[:, 0]
    rest = rest[torch.randperm(len(rest), generator=g)]
    n_valid = round(valid_share * len(rest))
    rows = {
        "train": rest[n_valid:].sort().values,
        "valid": rest[:n_valid].sort().values,
        "test": in_test.nonzero()[:, 0],
    }
    return rows, held


class ForecastClassifier(EncoderClassifier):
    """The language model of :class:`ForecastTask`: the task's tokenised examples as buffers, a batch is a
    ``(n, 1)`` tensor of example rows (as :func:`~kgdistill.kglm.classifier.fit_task` batches them).

    Args:
        task: the examples. config / state / dim: the encoder's (``LoadedEncoder``). entity_table: ``(E, d_k)``
            KGE vectors of the task's entities, or ``None``; known: ``(E,)`` which rows the KGE has (others are
            not injected).
    """

    def __init__(
        self,
        task: ForecastTask,
        config: dict[str, Any],
        state: dict[str, torch.Tensor] | None,
        dim: int,
        *,
        entity_table: FloatTensor | None = None,
        known: torch.Tensor | None = None,
        layer: int = -1,
    ) -> None:
        super().__init__(
            config, state, task.num_labels, dim, entity_table=entity_table, layer=layer
        )
        mentions = task.mentions
        if entity_table is not None and known is not None:
            mentions = torch.where(
                mentions >= 0, torch.where(known[mentions.clamp_min(0)], mentions, -1), -1
            )
        elif entity_table is None:
            mentions = torch.full_like(mentions, -1)
        self.register_buffer("ids", task.ids.clone())
        self.register_buffer("mask", task.mask.clone())
        self.register_buffer("mentions", mentions)

    def forward(self, rows: LongTensor) -> FloatTensor:
        """``rows (n, 1)`` -> answer logits ``(n, 3)``."""
        return self.forward_states(rows)[0]

    def forward_states(self, rows: LongTensor) -> tuple[FloatTensor, FloatTensor]:
        """``rows (n, 1)`` -> logits ``(n, 3)`` and the pooled states ``(n, D)``."""
        r = rows[:, 0]
        width = int(self.mask[r].sum(1).max())  # the batch's longest example, not the whole window
        ids, mask, mentions = self.ids[r, :width], self.mask[r, :width], self.mentions[r, :width]
        pooled = mean_pool(self.hidden(ids, mask, mentions), mask)
        return self.head(pooled), pooled
