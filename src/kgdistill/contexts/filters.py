"""Quality filters for generated contexts: a text is rejected as ``empty``, ``too_short``, ``repetition`` or
``prompt_echo``, checked in that order (the first failing check is the reason).

* ``too_short``: fewer than ``min_words`` words (per kind: an entity description, a triple description);
* ``repetition``: the share of word n-grams (``ngram`` words) that repeat an earlier n-gram of the same text is
  above ``max_repeated`` - the loops small models fall into ("... and the city and the city and the city ...");
* ``prompt_echo``: the text starts with the prompt's opening words, or holds more than ``max_echo`` of the
  prompt's word n-grams - the model returned its instructions instead of answering them.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

__all__ = ["REASONS", "QualityFilter", "words"]

REASONS = ("empty", "too_short", "repetition", "prompt_echo")
_WORD = re.compile(r"\w+(?:['’-]\w+)*")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (letters, digits, inner apostrophes and hyphens)."""
    return [w.lower() for w in _WORD.findall(text)]


def _ngrams(ws: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]


class QualityFilter(BaseModel):
    """Which generated texts are kept (see the module docstring).

    Attributes:
        min_words_entity: fewest words of an entity description.
        min_words_triple: fewest words of a triple description (the seed asks for about 100).
        ngram: n-gram size of the repetition and echo checks.
        max_repeated: largest share of repeated n-grams.
        max_echo: largest share of the prompt's n-grams found in the text.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_words_entity: NonNegativeInt = 30
    min_words_triple: NonNegativeInt = 80
    ngram: PositiveInt = 4
    max_repeated: float = Field(default=0.3, ge=0.0, le=1.0)
    max_echo: float = Field(default=0.5, ge=0.0, le=1.0)

    def check(self, text: str, prompt: str, kind: str) -> str | None:
        """The reason to reject ``text`` generated for ``prompt`` (a record of ``kind``), ``None`` to keep it."""
        ws = words(text)
        if not ws:
            return "empty"
        if len(ws) < (self.min_words_entity if kind == "entity" else self.min_words_triple):
            return "too_short"
        grams = _ngrams(ws, self.ngram)
        if grams and 1 - len(set(grams)) / len(grams) > self.max_repeated:
            return "repetition"
        pw = words(prompt)
        opening = min(len(pw), 8)
        if opening and ws[:opening] == pw[:opening]:
            return "prompt_echo"
        prompt_grams = set(_ngrams(pw, self.ngram))
        if prompt_grams and len(prompt_grams & set(grams)) / len(prompt_grams) > self.max_echo:
            return "prompt_echo"
        return None
