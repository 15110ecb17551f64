"""KG <-> language model: knowledge-graph embeddings injected into a language model (KG -> LM), and, to come, the
language model's triples back into the graph (LM -> KG) in alternating rounds (seed 002, methods.md section 4)."""

from kgdistill.kglm.fusion import KnowledgeInjection, encoder_layers

__all__ = ["KnowledgeInjection", "encoder_layers"]
