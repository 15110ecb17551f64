"""Text for knowledge-graph elements: verbalisers of entities, relations and times (for text encoders)."""

from kgdistill.text.sources import camel_to_words, dataset_style, freebase_relation, yago_name
from kgdistill.text.verbalize import KGTexts, kg_texts, read_text_file, time_phrase, time_phrases

__all__ = [
    "KGTexts",
    "camel_to_words",
    "dataset_style",
    "freebase_relation",
    "kg_texts",
    "read_text_file",
    "time_phrase",
    "time_phrases",
    "yago_name",
]
