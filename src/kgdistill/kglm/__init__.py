"""KG <-> language model (seed 002, methods.md section 4): knowledge-graph embeddings injected into a language
model (KG -> LM), the language model's confident triples back into the graph as hard facts or soft labels (LM -> KG),
and alternating rounds of both (:mod:`kgdistill.kglm.rounds`)."""

from kgdistill.kglm.augment import (
    candidate_confidence,
    hold_out,
    kge_confidence,
    lm_confidence,
    lm_confidence_and_rank,
    precision,
    propose,
    propose_symmetric,
    select,
    soft_label_cache,
    write_static_graph,
)
from kgdistill.kglm.classifier import (
    EncoderClassifier,
    RelationClassifier,
    align_table,
    evaluate_task,
    fit_task,
)
from kgdistill.kglm.forecast import ANSWERS, ForecastClassifier, ForecastTask, forecast_task
from kgdistill.kglm.fusion import KnowledgeInjection, encoder_layers
from kgdistill.kglm.task import RelationTask, macro_f1, relation_task

__all__ = [
    "ANSWERS",
    "EncoderClassifier",
    "ForecastClassifier",
    "ForecastTask",
    "KnowledgeInjection",
    "RelationClassifier",
    "RelationTask",
    "align_table",
    "candidate_confidence",
    "encoder_layers",
    "evaluate_task",
    "fit_task",
    "forecast_task",
    "hold_out",
    "kge_confidence",
    "lm_confidence",
    "lm_confidence_and_rank",
    "macro_f1",
    "precision",
    "propose",
    "propose_symmetric",
    "relation_task",
    "select",
    "soft_label_cache",
    "write_static_graph",
]
