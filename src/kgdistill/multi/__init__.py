"""Multi-source knowledge graphs: linked collections, the joint union, target views with linked subgraphs."""

from kgdistill.multi.linked import LINKED, Graph, LinkedKGs, load_linked, read_dbp15k, read_linked
from kgdistill.multi.split import split_triples
from kgdistill.multi.views import MultiKG, build_target, build_union, linked_subgraph

__all__ = [
    "LINKED",
    "Graph",
    "LinkedKGs",
    "MultiKG",
    "build_target",
    "build_union",
    "linked_subgraph",
    "load_linked",
    "read_dbp15k",
    "read_linked",
    "split_triples",
]
