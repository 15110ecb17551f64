"""KG <-> language model: knowledge-graph embeddings injected into a language model (KG -> LM), and, to come, the
language model's triples back into the graph (LM -> KG) in alternating rounds (seed 002, methods.md section 4)."""

from kgdistill.kglm.classifier import RelationClassifier, align_table, evaluate_task, fit_task
from kgdistill.kglm.fusion import KnowledgeInjection, encoder_layers
from kgdistill.kglm.task import RelationTask, macro_f1, relation_task

__all__ = [
    "KnowledgeInjection",
    "RelationClassifier",
    "RelationTask",
    "align_table",
    "encoder_layers",
    "evaluate_task",
    "fit_task",
    "macro_f1",
    "relation_task",
]
