"""The Python API. Every CLI verb is a thin layer over one function here.

>>> from kgdistill import api
>>> cfg, _ = api.load_config("configs/teacher/tntcomplex-yago11k.yaml", ["stages.0.epochs=2"])
>>> result = api.train(cfg)            # doctest: +SKIP
>>> result.metrics.mrr                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kgdistill import dist
from kgdistill.checkpoint import Checkpoint, load_checkpoint, load_model
from kgdistill.config import (
    DataConfig,
    EvalConfig,
    RunConfig,
    load_config,
    parse_config,
    validate_section,
)
from kgdistill.data.kg import KG
from kgdistill.distill import KGETeacher, write_cache
from kgdistill.distill.teachers import file_digest
from kgdistill.errors import CheckpointError, ConfigError
from kgdistill.evaluate import Metrics, evaluate_rerank, evaluate_rerank_sweep
from kgdistill.evaluate import evaluate as rank_all
from kgdistill.io import atomic_write_text
from kgdistill.models.base import KGEModel
from kgdistill.predict import Answer, Predictor, Query
from kgdistill.run import Run, check, eval_kwargs, load_data
from kgdistill.runs import (
    finished,
    keep_freed_memory,
    new_run_dir,
    resolve_device,
    seed_everything,
)
from kgdistill.vocab import GraphVocab, check_graph

__all__ = [
    "RunConfig",
    "RunResult",
    "cache",
    "check",
    "demo",
    "distill",
    "ensure_run",
    "evaluate",
    "evaluate_run",
    "load_config",
    "load_data",
    "predict",
    "rerank_sweep",
    "train",
]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """A finished run: its folder, its test metrics and its model (best weights)."""

    run_dir: Path
    metrics: Metrics
    model: KGEModel


def train(
    cfg: RunConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    runs_root: str | Path = "runs",
    overwrite: bool = False,
    on_valid: Callable[[int, float], None] | None = None,
) -> RunResult:
    """Train a model as configured, then evaluate its best checkpoint on ``cfg.eval.split``.

    The run folder is claimed for the whole run (:func:`kgdistill.runfolder.claim`): locked against a second
    process, never overwritten without ``overwrite``, and removed again when the run fails before its first
    checkpoint.

    Args:
        cfg: the validated run config (stored, resolved, in every checkpoint).
        out: the run folder (default ``runs/<timestamp>-<name>``).
        resume: a run folder to continue (its ``last.safetensors`` and its own config are used).
        overwrite: replace a run already in ``out``.
        on_valid: called with ``(epoch, valid MRR)`` after each validation (:func:`kgdistill.train.fit`); an
            exception it raises stops the run, resumable from its last checkpoint.

    Returns:
        :class:`RunResult` with the run folder, the test metrics and the best model.
    """
    dist.init_from_env()  # under torchrun: join the process group (nothing for one process)
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "last.safetensors").is_file():
            raise CheckpointError(f"cannot resume: {run_dir / 'last.safetensors'} does not exist")
    elif cfg is None:
        raise ConfigError("train() needs a config, or resume= a run folder")
    else:
        check(cfg, teacher_fields=dict.fromkeys(cfg.teachers))  # before anything is read or written
        run_dir = (
            Path(out) if out is not None else new_run_dir(runs_root, cfg.name or cfg.model.name)
        )
    run_dir = Path(dist.broadcast(str(run_dir)))  # rank 0's timestamped folder
    with dist.claim(run_dir, fresh=resume is None, overwrite=overwrite):
        return _train_in(run_dir, cfg, resume=resume is not None, on_valid=on_valid)


def _train_in(
    run_dir: Path,
    cfg: RunConfig | None,
    *,
    resume: bool,
    on_valid: Callable[[int, float], None] | None = None,
) -> RunResult:
    """:func:`train` inside its claimed run folder."""
    ckpt = None
    if resume:
        ckpt = load_checkpoint(run_dir / "last.safetensors")
        cfg = RunConfig.model_validate(ckpt.meta["config"])
    assert cfg is not None
    seed_everything(cfg.seed)
    if cfg.train.keep_freed_memory:
        keep_freed_memory()
    run = Run.build(cfg, checkpoint=ckpt)
    if ckpt is None and dist.is_main():
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        )
    state = run.fit(run_dir, resume=ckpt, on_valid=on_valid)
    best = run_dir / "best.safetensors"
    if best.is_file():
        load_model(load_checkpoint(best), run.model)
    metrics = run.evaluate()
    retention = run.retention(metrics)  # every rank: the teachers' evaluations are shared too
    if dist.is_main():
        with dist.alone():
            run.write_results(run_dir, metrics, state, retention=retention)
    return RunResult(run_dir=run_dir, metrics=metrics, model=run.model)


def distill(
    cfg: RunConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    runs_root: str | Path = "runs",
    overwrite: bool = False,
) -> RunResult:
    """Train a student against the config's ``teachers`` (a :func:`train` run that needs at least one teacher)."""
    if cfg is not None and not cfg.teachers:
        raise ConfigError(
            "config key 'teachers': distillation needs at least one teacher "
            "(e.g. teachers: {kge: {name: checkpoint, path: runs/<teacher run>}})"
        )
    return train(cfg, out=out, resume=resume, runs_root=runs_root, overwrite=overwrite)


def ensure_run(
    cfg_raw: dict[str, Any],
    run_dir: str | Path,
    *,
    on_valid: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Train, resume or reuse the run of ``cfg_raw`` in ``run_dir``; returns its ``metrics.json``.

    A finished run is reused, an interrupted one (a ``last.safetensors``, no metrics yet) resumed, else the run is
    trained from the start: a driver of many runs survives a kill and only does what is missing. A folder holding
    a run of a different config is an error (never silently reused). ``on_valid``: as for :func:`train`.
    """
    run_dir = Path(run_dir)
    cfg = parse_config(cfg_raw)
    stored = run_dir / "config.yaml"
    # the stored config read through the current schema: a field added since (with its default) is no change
    if stored.is_file() and parse_config(yaml.safe_load(stored.read_text())) != cfg:
        raise ConfigError(
            f"{run_dir} holds a run of another config; remove it or use another --work folder"
        )
    if finished(run_dir):
        log.info("reusing %s", run_dir)
    elif (run_dir / "last.safetensors").is_file():
        log.info("resuming %s", run_dir)
        train(resume=run_dir, on_valid=on_valid)
    else:
        log.info("training %s", run_dir)
        train(cfg, out=run_dir, on_valid=on_valid)
    return json.loads((run_dir / "metrics.json").read_text())  # type: ignore[no-any-return]


def cache(
    teacher: str | Path,
    out: str | Path,
    *,
    k: int | None = 128,
    split: str = "train",
    data: DataConfig | RunConfig | str | Path | None = None,
    data_root: str | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> Path:
    """Write a teacher's scores for every training query of a graph to ``out`` (see
    :mod:`kgdistill.distill.cache`); a student on that graph reads it with ``{name: cache, path: out}``.

    Args:
        data: the student's graph, when it is not the teacher's own: a data section, a run config, or the path of
            a run config YAML (for example a target view of a linked collection under a teacher trained on the
            union). The teacher answers in that graph's ids (aligned by labels, as a checkpoint teacher does).
    """
    ckpt, cfg = _open(teacher)
    if isinstance(data, (str, Path)):
        data = load_config(data)[0]
    chosen = cfg.data if data is None else data.data if isinstance(data, RunConfig) else data
    if data_root:
        chosen = chosen.model_copy(update={"root": data_root})
    kg = load_data(chosen)
    device = resolve_device(cfg.train.device)
    model = KGETeacher(path=str(ckpt.path), kg=kg).to(device)
    return write_cache(
        out,
        model,
        kg,
        split=split,
        k=k,
        batch_size=batch_size,
        source=str(ckpt.path),
        progress=progress,
        # full rows of a checkpoint double as its score cache (teachers.<name>.score_cache)
        extra={"teacher_sha256": file_digest(Path(ckpt.path))},
    )


def encode(
    data: str,
    *,
    encoder: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
    cache_dir: str | None = None,
    data_root: str | None = None,
    time: dict[str, Any] | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Verbalise a dataset's entities, relations and times and encode them into the text cache.

    What an ``llm_scorer`` run would encode, done ahead of time (a run afterwards finds every vector cached).

    Args:
        data: a dataset name or folder. encoder: an encoder spec (default: the packaged MiniLM).
        text: options of :func:`kgdistill.text.kg_texts` (user text files, descriptions).
        time: the dataset's time protocol (``data.time`` of a run config), so time phrases match the run's.
        dry_run: only build the texts and report their sources, encode nothing.

    Returns:
        ``{"texts": report, "examples": {...}}`` and, unless ``dry_run``, ``"encoder"`` and ``"dim"``.
    """
    from kgdistill.features import text_features
    from kgdistill.text import kg_texts

    dc = DataConfig.model_validate(
        {"name": data, "root": data_root, **({"time": time} if time else {})}
    )
    kg = load_data(dc)
    texts = kg_texts(kg, **(text or {}))
    out: dict[str, Any] = {
        "dataset": kg.name,
        "texts": texts.report,
        "examples": {
            "entity": texts.entities[:3],
            "relation": [*texts.relations[:2], texts.inverse_relation(0)],
            "time": texts.times[:3],
        },
    }
    if not dry_run:
        report = text_features(
            kg, encoder=encoder, text=text, cache_dir=cache_dir, progress=progress
        ).report
        out.update(encoder=report["encoder"], dim=report["dim"])
    return out


def _open(path: str | Path) -> tuple[Checkpoint, RunConfig]:
    ckpt = load_checkpoint(path)
    return ckpt, RunConfig.model_validate(ckpt.meta["config"])


def evaluate(model: Any, kg: KG, split: str = "test", **protocol: Any) -> Metrics:
    """Rank every query of ``kg``'s ``split`` with ``model`` (anything with ``score_all``).

    The model must have been built for ``kg``: a model that records its graph (every model built by
    :func:`kgdistill.models.build_model`, a run or a checkpoint) and a graph of other sizes or labels is one
    :class:`~kgdistill.errors.GraphMismatchError` naming both, not an index error inside PyTorch.

    Args:
        protocol: keyword arguments of :func:`kgdistill.evaluate.evaluate` (``ties``, ``time_aware``,
            ``time_filter``, ``filtered``, ``ks``, ``filter_index``, ``batch_size``, ``progress``, ``max_queries``).
    """
    check_graph(model, kg)
    return rank_all(model, kg, split, **protocol)


def _eval_inputs(
    path: str | Path,
    split: str,
    overrides: dict[str, Any] | None,
    data_root: str | None,
    retriever: str | Path | None,
) -> tuple[Checkpoint, KG, EvalConfig, Any, tuple[Checkpoint, Any] | None]:
    """A run's checkpoint, graph, resolved ``eval`` section, model and (when given) retriever, both on the run's
    device; each checkpoint checked against the graph before it is built."""
    dist.init_from_env()  # under torchrun the ranks share the queries (kgdistill.dist)
    ckpt, cfg = _open(path)
    data = cfg.data.model_copy(update={"root": data_root}) if data_root else cfg.data
    kg = load_data(data)
    check_graph(GraphVocab.of_checkpoint(ckpt.meta), kg, what=str(ckpt.path))  # before building it
    device = dist.local_device(resolve_device(cfg.train.device))
    first = None
    if retriever is not None:
        first, _ = _open(retriever)
        check_graph(GraphVocab.of_checkpoint(first.meta), kg, what=str(first.path))
    model = load_model(ckpt).to(device)
    ev = validate_section(
        EvalConfig, {**cfg.eval.model_dump(), "split": split, **(overrides or {})}, "eval"
    )
    return ckpt, kg, ev, model, None if first is None else (first, load_model(first).to(device))


def _describe_run(metrics: Metrics, ckpt: Checkpoint, kg: KG, model: Any) -> Metrics:
    metrics.protocol.update(
        model=ckpt.meta["model"]["name"],
        dataset=kg.name,
        num_parameters=model.num_parameters(),
        checkpoint=str(ckpt.path),
    )
    return metrics


def evaluate_run(
    path: str | Path,
    *,
    split: str = "test",
    overrides: dict[str, Any] | None = None,
    data_root: str | None = None,
    progress: bool = True,
    retriever: str | Path | None = None,
    rerank_k: int = 100,
    max_queries: int | None = None,
    by_relation: bool = False,
) -> Metrics:
    """Evaluate a run folder or checkpoint on ``split`` with the protocol it was trained with.

    ``overrides`` replace keys of the ``eval`` section (``ties``, ``time_aware``, ``time_filter``, ``filtered``,
    ``ks``, ``rerank_mix``).
    ``retriever``: another finished run (or checkpoint) on the same graph whose filtered top-``rerank_k`` this
    run re-ranks (:func:`kgdistill.evaluate.evaluate_rerank`): how a cross-encoder or a generative model is
    evaluated on a real graph, its scores fused with the retriever's at weight ``eval.rerank_mix`` (the run's own,
    or an override). ``max_queries``: the first that many facts of the split only (a quick look at a
    slow model; the protocol records it). ``by_relation``: also the metrics of each relation and relation
    category (``Metrics.breakdown``, :func:`kgdistill.breakdown.breakdown`).
    """
    ckpt, kg, ev, model, first = _eval_inputs(path, split, overrides, data_root, retriever)
    if first is None:
        metrics = rank_all(
            model,
            kg,
            ev.split,
            progress=progress,
            batch_size=ev.batch_size,
            max_queries=max_queries,
            by_relation=by_relation,
            **eval_kwargs(ev),
        )
    else:
        metrics = evaluate_rerank(
            first[1],
            model,
            kg,
            ev.split,
            k=rerank_k,
            mix=ev.rerank_mix,
            progress=progress,
            batch_size=ev.batch_size,
            max_queries=max_queries,
            by_relation=by_relation,
            **eval_kwargs(ev),
        )
        metrics.protocol["rerank"].update(retriever_checkpoint=str(first[0].path))
    return _describe_run(metrics, ckpt, kg, model)


def rerank_sweep(
    path: str | Path,
    retriever: str | Path,
    *,
    mixes: Sequence[float],
    split: str = "valid",
    rerank_k: int = 100,
    max_queries: int | None = None,
    overrides: dict[str, Any] | None = None,
    data_root: str | None = None,
    progress: bool = True,
) -> dict[float, Metrics]:
    """The run's re-ranking of ``retriever``'s top-``rerank_k`` at every fusion weight of ``mixes``, from one pass
    of the re-ranker (:func:`kgdistill.evaluate.evaluate_rerank_sweep`): choose ``eval.rerank_mix`` on the
    validation split, then evaluate the test split at that value. Arguments as :func:`evaluate_run`."""
    ckpt, kg, ev, model, first = _eval_inputs(path, split, overrides, data_root, retriever)
    assert first is not None
    sweep = evaluate_rerank_sweep(
        first[1],
        model,
        kg,
        ev.split,
        mixes=mixes,
        k=rerank_k,
        progress=progress,
        batch_size=ev.batch_size,
        max_queries=max_queries,
        **eval_kwargs(ev),
    )
    for metrics in sweep.values():
        metrics.protocol["rerank"].update(retriever_checkpoint=str(first[0].path))
        _describe_run(metrics, ckpt, kg, model)
    return sweep


def predict(
    path: str | Path,
    *,
    relation: str,
    head: str | None = None,
    tail: str | None = None,
    time: str | None = None,
    k: int = 10,
    exclude_known: bool = False,
    data_root: str | None = None,
) -> tuple[Query, list[Answer]]:
    """Top-``k`` answers of ``(head, relation, ?, time)`` or ``(?, relation, tail, time)``, by label.

    For many queries, load a :class:`~kgdistill.predict.Predictor` once instead.

    Args:
        exclude_known: leave out answers already known in training.
        data_root: where the run's dataset is found (to mark answers known in training).

    Returns:
        The resolved query (with the time label its time mapped to) and the answers, best first.
    """
    predictor = Predictor.load(path, data_root=data_root)
    query = predictor.query(relation, head=head, tail=tail, time=time)
    return query, predictor.topk(query, k, exclude_known=exclude_known)


def demo(
    out: str | Path | None = None, *, epochs: int = 30, runs_root: str | Path = "runs"
) -> RunResult:
    """Train and evaluate a small TNTComplEx teacher on the bundled YAGO11k (minutes on 2 CPU cores)."""
    from importlib.resources import files

    path = files("kgdistill") / "configs" / "demo.yaml"
    cfg, _ = load_config(None, [f"stages.0.epochs={epochs}"], base=yaml.safe_load(path.read_text()))
    t0 = time.perf_counter()
    result = train(cfg, out=out, runs_root=runs_root)
    log.info("demo done in %.1f s", time.perf_counter() - t0)
    return result
