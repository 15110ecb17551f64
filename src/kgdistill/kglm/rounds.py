"""Alternating KG -> LM -> KG rounds with a stopping rule, resumable per round.

Round ``i`` (``0, 1, ...``):

1. a KGE run on the round's graph (round 0: the training facts left after :func:`~kgdistill.kglm.augment.hold_out`;
   round ``i > 0``: those plus every fact added so far), evaluated by link prediction on the untouched valid and
   test splits;
2. the language model of the text task (relation classification: trained on pairs of the held-out-free training
   facts; tested on pairs of the held-out facts, between entities no training fact links, each with an entity no
   training pair names: no KGE of round 0 and no language model has read them) fine-tuned with that KGE
   injected; a later round's KGE may have trained on held-out facts that LM -> KG added back;
3. LM -> KG: the candidates (``source``: the KGE's filtered top-k, ``kge``; the missing reverses of the facts of
   relations the round's graph shows symmetric, ``symmetric``, a rule; or both), scored by the language model
   (``select_by: lm``; ``kge``: by the KGE's own softmax, the self-training control without a language model;
   ``both``: the product of the two, a product of experts that keeps a candidate only where both models find it
   likely); those selected are added to the next round's graph as hard facts (``labels: hard``), or kept as
   soft labels (``labels: soft``): a top-k teacher cache of the facts with their confidences, read by a
   ``soft_labels`` term of the next KGE's objective at ``soft_weight``; their precision is counted against the
   held-out facts.

The rounds stop after ``max_rounds``, or when a round gains on neither side (the KGE's validation MRR and the
language model's validation accuracy both at most the best so far). Each finished round writes
``round-<i>/round.json``; a rerun skips the finished rounds (the KGE runs resume on their own).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgdistill.api import ensure_run
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.data import build_kg, load_kg, read_static_names
from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text
from kgdistill.kglm.augment import (
    candidate_confidence,
    hold_out,
    precision,
    propose,
    propose_symmetric,
    selected_rows,
    soft_label_cache,
    write_static_graph,
)
from kgdistill.kglm.classifier import RelationClassifier, align_table, evaluate_task, fit_task
from kgdistill.kglm.task import relation_task
from kgdistill.plm import plm_features

__all__ = ["RoundsConfig", "lm_baseline", "run_rounds"]

log = logging.getLogger(__name__)
SOURCES = ("kge", "symmetric", "kge+symmetric")


@dataclass
class RoundsConfig:
    """What the rounds read.

    Attributes:
        data: a static dataset (name or folder). data_root: where names resolve.
        hold_out: share of the training facts removed on purpose (the precision's ground truth).
        kge: the KGE run's ``model``, ``stages`` and ``train`` sections (``data`` is set per round).
        lm: ``max_length`` and ``encoder`` of :func:`kgdistill.plm.plm_features`, and ``num_labels``,
            ``test_entities``, ``epochs``, ``batch_size``, ``lr``, ``head_lr``, ``layer``.
            ``max_examples`` caps each split of the task (a seeded draw; a CPU-sized run). ``negatives``:
            "no relation" pairs per example (:func:`~kgdistill.kglm.task.relation_task`), which make the
            language model's confidence a verifier of candidate triples.
        source: where the candidates come from: ``kge`` (the KGE's filtered top-``k``,
            :func:`~kgdistill.kglm.augment.propose`), ``symmetric`` (the graph's own symmetry,
            :func:`~kgdistill.kglm.augment.propose_symmetric` at ``symmetric_share``) or ``kge+symmetric`` (both
            pools, each candidate once). The selection scores them all alike.
        k / max_queries / threshold / top: of :func:`~kgdistill.kglm.augment.propose` and ``select``.
        select_by: ``lm`` (the language model's confidence), ``kge`` (the KGE's own: the control, which
            trains no language model; its records' ``lm`` is ``None``) or ``both`` (their product: the language
            model's probability of the relation given the pair times the KGE's of the tail given the query).
        labels: ``hard`` (facts added to the graph) or ``soft`` (weighted positives, ``soft_weight``).
        max_rounds: the most rounds. seed: every seeded step.
    """

    data: str
    data_root: str | None = None
    hold_out: float = 0.1
    kge: dict[str, Any] = field(default_factory=dict)
    lm: dict[str, Any] = field(default_factory=dict)
    source: str = "kge"
    symmetric_share: float = 0.5
    k: int = 5
    max_queries: int | None = None
    threshold: float | None = 0.5
    top: int | None = None
    select_by: str = "lm"
    labels: str = "hard"
    soft_weight: float = 1.0
    max_rounds: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for key, value, allowed in (
            ("select_by", self.select_by, ("lm", "kge", "both")),
            ("labels", self.labels, ("hard", "soft")),
            ("source", self.source, SOURCES),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"config key '{key}': '{value}' is not one of {', '.join(allowed)}"
                )
        if not 0 < self.symmetric_share <= 1:
            raise ConfigError(
                f"config key 'symmetric_share': {self.symmetric_share} is not in (0, 1]"
            )


def _kge(cfg: RoundsConfig, graph: Path, run: Path, soft: Path | None = None) -> dict[str, Any]:
    raw = {"seed": cfg.seed, "data": {"name": str(graph)}, **cfg.kge}
    raw.setdefault("eval", {"split": "test", "ties": "realistic"})
    if soft is not None:  # the added facts as soft labels: a term of every stage's objective
        raw["teachers"] = {**raw.get("teachers", {}), "soft": {"name": "cache", "path": str(soft)}}
        term = {"loss": "soft_labels", "teacher": "soft", "weight": cfg.soft_weight}
        raw["stages"] = [
            {**st, "objective": [*st.get("objective", [{"loss": "supervised_ce"}]), term]}
            for st in raw.get("stages", [{}])
        ]
    return ensure_run(raw, run)


def _candidates(
    cfg: RoundsConfig, kge_model: torch.nn.Module, kg: Any, current: torch.Tensor, i: int
) -> torch.Tensor:
    """Round ``i``'s candidate facts ``(C, 3)`` from ``cfg.source``, none of them in ``current (N, 3)`` (the
    round's graph) nor a valid or test fact."""
    pools = []
    if cfg.source in ("kge", "kge+symmetric"):
        pools.append(
            propose(kge_model, kg, current, k=cfg.k, max_queries=cfg.max_queries, seed=cfg.seed + i)
        )
    if cfg.source in ("symmetric", "kge+symmetric"):
        pools.append(propose_symmetric(kg, current, min_share=cfg.symmetric_share))
    return torch.unique(torch.cat(pools), dim=0) if len(pools) > 1 else pools[0]


def _lm_round(
    cfg: RoundsConfig,
    kg: Any,
    task: Any,
    kge_run: Path | None,
    *,
    inject: bool = True,
    distill: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The language model of the task, fine-tuned: with the KGE of ``kge_run`` injected (``inject``), pulled
    towards it (``distill``, the distillation form), both, or neither (``kge_run`` None: the plain PLM)."""
    lm = dict(cfg.lm)
    table = known = None
    if kge_run is not None:
        ckpt = load_checkpoint(kge_run / "best.safetensors")
        table, known = align_table(
            list(kg.entity_labels),
            list(ckpt.meta["id_maps"]["entity"]),
            load_model(ckpt).entities.table().detach(),
        )
    features = plm_features(kg, encoder=lm.get("encoder"), max_length=int(lm.get("max_length", 48)))
    torch.manual_seed(cfg.seed)
    model = RelationClassifier(
        features,
        task.num_labels,
        entity_table=table if inject else None,
        known=known if inject else None,
        layer=int(lm.get("layer", -1)),
    )
    history = fit_task(
        model,
        task,
        epochs=int(lm.get("epochs", 2)),
        batch_size=int(lm.get("batch_size", 32)),
        lr=float(lm.get("lr", 5e-5)),
        head_lr=float(lm.get("head_lr", 1e-3)),
        seed=cfg.seed,
        distill=distill,
        teacher_table=table if distill else None,
        teacher_known=known if distill else None,
    )
    return model, {
        "valid": history[-1],
        "test": evaluate_task(model, task, "test"),
        "kge_known": int(known.sum()) if known is not None and inject else 0,
        "task_examples": task.report["examples"],
    }


def _prepare(cfg: RoundsConfig, work: Path) -> tuple[Any, Any, Any, Path, Any, Any]:
    """The graph, its kept and held-out facts, round 0's graph folder, that graph, and the text task."""
    kg = load_kg(cfg.data, root=cfg.data_root)
    kept, held = hold_out(kg, cfg.hold_out, seed=cfg.seed)
    base = write_static_graph(work / "graph-0", kg, kept)
    reduced = build_kg(read_static_names(base))
    if reduced.entity_labels != kg.entity_labels or reduced.relation_labels != kg.relation_labels:
        raise ConfigError(
            f"config key 'data': the rounds need a dataset of labelled triples whose ids follow the labels' "
            f"order (train.txt / valid.txt / test.txt); '{cfg.data}' is not one"
        )
    task = relation_task(
        reduced,
        num_labels=int(cfg.lm.get("num_labels", 20)),
        test_entities=float(cfg.lm.get("test_entities", 0.1)),
        seed=cfg.seed,
        splits=("train",),
        max_examples=cfg.lm.get("max_examples"),
        test_facts=held,
        negatives=int(cfg.lm.get("negatives", 0)),
    )
    return kg, kept, held, base, reduced, task


def lm_baseline(
    cfg: RoundsConfig,
    work: str | Path,
    *,
    kge_run: str | Path | None = None,
    distill: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The language model of the rounds' task without injection: the plain PLM (``distill`` None), or pulled
    towards the KGE of ``kge_run`` by ``distill`` (the distillation form alone). Same task, seed and settings as
    :func:`run_rounds` under ``work``; returns (and writes) ``{"valid", "test"}`` metrics, reused when there."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    name = "lm-plain" if distill is None else f"lm-{distill['loss']}"
    done = work / f"{name}.json"
    if done.is_file():
        return json.loads(done.read_text())  # type: ignore[no-any-return]
    if distill is not None and kge_run is None:
        raise ConfigError("config key 'distill': the distillation form needs a KGE run (kge_run)")
    _, _, _, _, reduced, task = _prepare(cfg, work)
    run = None if distill is None or kge_run is None else Path(kge_run)
    _, metrics = _lm_round(cfg, reduced, task, run, inject=False, distill=distill)
    metrics["task"] = task.report
    atomic_write_text(done, json.dumps(metrics, indent=2) + "\n")
    return metrics


def run_rounds(cfg: RoundsConfig, work: str | Path) -> list[dict[str, Any]]:
    """Run (or finish) the rounds of ``cfg`` under ``work``; returns one record per round (see the module
    docstring)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work / "rounds-config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    kg, kept, held, base, reduced, task = _prepare(cfg, work)
    records: list[dict[str, Any]] = []
    added = torch.zeros(0, 3, dtype=torch.long)
    weights = torch.zeros(0)
    best_kge, best_lm = float("-inf"), float("-inf")
    for i in range(cfg.max_rounds):
        folder = work / f"round-{i}"
        done = folder / "round.json"
        graph = base if i == 0 else work / f"graph-{i}"
        if done.is_file():
            record = json.loads(done.read_text())
            added = torch.tensor(record["added_total"], dtype=torch.long).view(-1, 3)
            weights = torch.tensor(record.get("weights_total", [1.0] * len(added)))
        else:
            soft = None
            if cfg.labels == "soft" and i > 0:  # the facts added so far, with their confidences
                soft = soft_label_cache(work / f"soft-{i}.safetensors", reduced, added, weights)
            metrics = _kge(cfg, base if soft else graph, folder / "kge", soft)
            # the control (select_by: kge) is the loop without a language model: none is trained
            model, lm_metrics = (
                _lm_round(cfg, reduced, task, folder / "kge")
                if cfg.select_by != "kge"
                else (None, None)
            )
            kge_model = load_model(load_checkpoint(folder / "kge" / "best.safetensors"))
            current = torch.cat([kept, added])
            candidates = _candidates(cfg, kge_model, kg, current, i)
            conf = candidate_confidence(cfg.select_by, model, task.relations, kge_model, candidates)
            keep = selected_rows(conf, threshold=cfg.threshold, top=cfg.top)
            new = candidates[keep]
            added = torch.cat([added, new])
            weights = torch.cat([weights, conf[keep].float()])
            if cfg.labels == "hard":
                write_static_graph(work / f"graph-{i + 1}", kg, kept, added)
            record = {
                "round": i,
                "graph_facts": len(current),
                "kge": {
                    "valid_mrr": metrics["best_valid_mrr"],
                    "test": metrics["sides"]["both"],
                },
                "lm": lm_metrics,
                "candidates": len(candidates),
                "scored": int((~conf.isnan()).sum()),
                "added": len(new),
                "precision": precision(new, held),
                "added_total": added.tolist(),
                "weights_total": weights.tolist(),
            }
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(done, json.dumps(record, indent=2) + "\n")
        lm_valid = record["lm"]["valid"]["accuracy"] if record["lm"] else float("-inf")
        log.info(
            "round %d: KGE valid MRR %.4f, LM valid accuracy %.4f, %d facts added (precision %s)",
            i,
            record["kge"]["valid_mrr"],
            lm_valid,
            record["added"],
            record["precision"],
        )
        records.append(record)
        gain_kge = record["kge"]["valid_mrr"] > best_kge
        gain_lm = lm_valid > best_lm
        best_kge = max(best_kge, record["kge"]["valid_mrr"])
        best_lm = max(best_lm, lm_valid)
        if i > 0 and not gain_kge and not gain_lm:
            log.info("round %d gained on neither side: stop", i)
            break
    return records
