"""The built-in datasets, linked collections and models as plain tables, readable without PyTorch.

``kgdistill datasets`` and ``kgdistill models`` answer from these tables, so listing what exists does not pay
for importing PyTorch (seconds on a cold start). The dataset registry (:data:`kgdistill.data.DATASETS`) and the
linked collections (:data:`kgdistill.multi.LINKED`) are built from :data:`DATASET_INFO` and :data:`LINKED_INFO`;
the model registry (:data:`kgdistill.models.MODELS`) keeps its builders (with their docstrings and time use), and
``tests/test_catalog.py`` checks that :data:`MODEL_INFO` names the same models with the same time use (a model
registered by user code is in the registry only). This module imports only the standard library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DATASET_INFO", "LINKED_INFO", "MODEL_INFO", "DatasetInfo", "ModelInfo", "data_root"]


@dataclass(frozen=True)
class DatasetInfo:
    """A built-in dataset: its folder under the data root, its kind, a description, whether it is bundled."""

    folder: str
    kind: Literal["interval", "point", "static"]
    description: str
    bundled: bool = False


DATASET_INFO: dict[str, DatasetInfo] = {
    "yago11k": DatasetInfo(
        "YAGO11k",
        "interval",
        "YAGO11k (HyTE): 10,623 entities, 10 relations, year intervals",
        bundled=True,
    ),
    "wikidata12k": DatasetInfo(
        "Wikidata12k",
        "interval",
        "Wikidata12k (HyTE): 12,554 entities, 24 relations, year intervals",
    ),
    "icews14": DatasetInfo(
        "ICEWS14", "point", "ICEWS14 (interpolation split): 7,128 entities, 230 relations, 365 days"
    ),
    "icews14_forecasting": DatasetInfo(
        "ICEWS14_forecasting",
        "point",
        "ICEWS14, chronological split (forecasting): hours turned into days",
    ),
    "fb15k237": DatasetInfo("FB15k-237", "static", "FB15k-237: 14,541 entities, 237 relations"),
    "wn18rr": DatasetInfo("WN18RR", "static", "WN18RR: 40,943 entities, 11 relations"),
    "fb15k237n": DatasetInfo(
        "FB15k-237N/KG-S2S",
        "static",
        "FB15k-237N (OpenKE id files of KG-S2S): 14,541 entities, 93 relations",
    ),
}


@dataclass(frozen=True)
class LinkedInfo:
    """A built-in linked collection: its folder under the data root and a description."""

    folder: str
    description: str


LINKED_INFO: dict[str, LinkedInfo] = {
    f"dbp15k_{p}": LinkedInfo(
        f"DBP15K/{p}", f"DBP15K {p}: {a.upper()} and EN DBpedia, 15,000 entity links"
    )
    for p, a in (("zh_en", "zh"), ("ja_en", "ja"), ("fr_en", "fr"))
}


@dataclass(frozen=True)
class ModelInfo:
    """A built-in model: how it uses time (as registered) and a one-line summary (the builder's docstring has
    the details)."""

    time_use: Literal["none", "required", "optional"]
    summary: str


MODEL_INFO: dict[str, ModelInfo] = {
    "bi_encoder": ModelInfo(
        "optional",
        "Bi-encoder (SimKGC-style): a trainable text encoder for queries and entities, cosine / temperature",
    ),
    "complex": ModelInfo("none", "ComplEx, Re(<h, r, conj t>), rank dim (Trouillon et al. 2016)"),
    "cross_encoder": ModelInfo(
        "optional",
        "Cross-encoder (KG-BERT-style): one text-encoder pass per (query, candidate), a re-ranker",
    ),
    "distmult": ModelInfo("none", "DistMult, <h, r, t> (Yang et al. 2015)"),
    "generative": ModelInfo(
        "optional",
        "Generative (KG-S2S-style): a causal LM's likelihood of the answer's name, a re-ranker",
    ),
    "hyte": ModelInfo("required", "HyTE: TransE on time hyperplanes (Dasgupta et al. 2018)"),
    "llm_scorer": ModelInfo(
        "optional", "The LLM scorer: a light head over frozen LLM text encodings"
    ),
    "rotate": ModelInfo("none", "RotatE, -||h * e^{i theta_r} - t||, rank dim (Sun et al. 2019)"),
    "ta_distmult": ModelInfo(
        "required",
        "TA-DistMult: DistMult with an LSTM over relation and time tokens (García-Durán et al. 2018)",
    ),
    "ta_transe": ModelInfo(
        "required",
        "TA-TransE: TransE with an LSTM over relation and time tokens (García-Durán et al. 2018)",
    ),
    "tntcomplex": ModelInfo(
        "required", "TNTComplEx, Re(<h, r * tau + r_nt, conj t>), rank dim (Lacroix et al. 2020)"
    ),
    "timeplex": ModelInfo(
        "required",
        "TimePlex (base): ComplEx plus entity-time terms, Re(<h, r + g tau, conj t>) + b Re(<t, r_ot, tau>) "
        "(Jain et al. 2020)",
    ),
    "transe": ModelInfo("none", "TransE, -||h + r - t||_p (Bordes et al. 2013)"),
    "ttranse": ModelInfo("required", "TTransE, -||h + r + tau - t||_p (Leblay and Chekol 2018)"),
}


def data_root(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The data root: ``root`` if given, else ``$KGDISTILL_DATA``, else ``None``."""
    value = root if root is not None else os.environ.get("KGDISTILL_DATA")
    return Path(value).expanduser() if value else None
