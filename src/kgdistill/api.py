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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from kgdistill import __version__
from kgdistill.checkpoint import Checkpoint, load_checkpoint, load_model
from kgdistill.config import (
    DataConfig,
    EvalConfig,
    RunConfig,
    load_config,
    parse_config,
    validate_section,
)
from kgdistill.data.datasets import load_kg
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.distill import TEACHERS, KGETeacher, teacher_from_spec, write_cache
from kgdistill.distill.teachers import describe_teacher
from kgdistill.errors import CheckpointError, ConfigError, KGDistillError
from kgdistill.evaluate import Metrics, evaluate
from kgdistill.io import atomic_write_text
from kgdistill.models.base import KGEModel, Vocab
from kgdistill.models.zoo import MODELS, build_model, is_temporal
from kgdistill.objective import Objective
from kgdistill.registry import check_kwargs
from kgdistill.report import metrics_table, plot_curves
from kgdistill.runs import (
    JsonlLog,
    finished,
    new_run_dir,
    resolve_device,
    seed_everything,
    write_json,
)
from kgdistill.train import fit

__all__ = [
    "RunConfig",
    "RunResult",
    "cache",
    "check",
    "demo",
    "distill",
    "ensure_run",
    "evaluate_run",
    "load_config",
    "load_data",
    "predict",
    "train",
]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """A finished run: its folder, its test metrics and its model (best weights)."""

    run_dir: Path
    metrics: Metrics
    model: KGEModel


def load_data(cfg: RunConfig | DataConfig) -> KG:
    """The config's dataset with its time protocol applied, or the configured view of a linked collection."""
    data = cfg.data if isinstance(cfg, RunConfig) else cfg
    if data.multi is not None:
        from kgdistill.multi import build_target, build_union, load_linked

        m = data.multi
        linked = load_linked(data.name, root=data.root)
        split = {"valid": m.valid, "test": m.test, "seed": m.split_seed}
        if m.view == "union":
            return build_union(linked, tie=m.tie, **split)
        return build_target(linked, m.view, hops=m.hops, **split)
    return load_kg(data.name, root=data.root, **data.protocol())


def check(
    cfg: RunConfig,
    kg: KG | None = None,
    teacher_fields: dict[str, frozenset[str] | None] | None = None,
) -> None:
    """Validate what pydantic cannot: registry names and their keys, model/data compatibility, objectives.

    Args:
        teacher_fields: teacher name -> fields of its output (``None``: not known yet, only the name is checked).
    """
    check_kwargs(
        MODELS.get(cfg.model.name),
        cfg.model.kwargs(),
        where="model",
        context={"vocab": None, "kg": None},
    )
    for name, spec in cfg.teachers.items():
        if "name" not in spec:
            raise ConfigError(
                f"config key 'teachers.{name}.name' is missing (one of {', '.join(TEACHERS.names())})"
            )
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        check_kwargs(
            TEACHERS.get(spec["name"]), kwargs, where=f"teachers.{name}", context={"kg": None}
        )
    if kg is not None and is_temporal(cfg.model.name) and not kg.temporal:
        raise ConfigError(
            f"config key 'model.name': '{cfg.model.name}' is temporal but dataset '{kg.name}' "
            "has no time column"
        )
    for i, stage in enumerate(cfg.stages):
        Objective.build(
            [t.as_dict() for t in stage.objective],
            teachers=teacher_fields or {},
            candidates=cfg.train.negatives > 0,
            where=f"stages.{i}.objective",
        )


def _meta(cfg: RunConfig, kg: KG, model: KGEModel) -> dict[str, Any]:
    return {
        "kgdistill_version": __version__,
        "config": cfg.model_dump(mode="json"),
        "model": {
            "name": cfg.model.name,
            "kwargs": {**cfg.model.kwargs(), **getattr(model, "build_kwargs", {})},
        },
        "id_maps": kg.id_maps(),
        "time": kg.time.to_dict(),
        "data": {
            "name": kg.name,
            "protocol": cfg.data.protocol(),
            **({"multi": cfg.data.multi.model_dump()} if cfg.data.multi else {}),
        },
        "num_parameters": model.num_parameters(),
    }


def train(
    cfg: RunConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    runs_root: str | Path = "runs",
) -> RunResult:
    """Train a model as configured, then evaluate its best checkpoint on ``cfg.eval.split``.

    Args:
        cfg: the validated run config (stored, resolved, in every checkpoint).
        out: the run folder (default ``runs/<timestamp>-<name>``).
        resume: a run folder to continue (its ``last.safetensors`` and its own config are used).

    Returns:
        :class:`RunResult` with the run folder, the test metrics and the best model.
    """
    ckpt = None
    if resume is not None:
        run_dir = Path(resume)
        last = run_dir / "last.safetensors"
        if not last.is_file():
            raise CheckpointError(f"cannot resume: {last} does not exist")
        ckpt = load_checkpoint(last)
        cfg = RunConfig.model_validate(ckpt.meta["config"])
    elif cfg is None:
        raise ConfigError("train() needs a config, or resume= a run folder")
    seed_everything(cfg.seed)
    check(cfg, teacher_fields=dict.fromkeys(cfg.teachers))  # before the data is read: fail fast
    kg = load_data(cfg)
    check(cfg, kg, teacher_fields=dict.fromkeys(cfg.teachers))
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and cfg.train.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    vocab = Vocab(kg.num_entities, kg.num_relations, kg.time.labels)
    if (
        ckpt is not None
    ):  # the stored spec also has what the builder derived (e.g. a text encoder's width)
        model = build_model(
            {"name": ckpt.meta["model"]["name"], **ckpt.meta["model"]["kwargs"]}, vocab
        )
    else:
        model = build_model({"name": cfg.model.name, **cfg.model.kwargs()}, vocab, kg=kg)
    if ckpt is not None:
        load_model(ckpt, model)
    else:
        run_dir = (
            Path(out) if out is not None else new_run_dir(runs_root, cfg.name or cfg.model.name)
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        )
    teachers = {
        name: teacher_from_spec(name, spec, kg, device) for name, spec in cfg.teachers.items()
    }
    meta = _meta(cfg, kg, model)
    ev = _eval_kwargs(cfg.eval)
    valid_filter = FilterIndex.build(kg, time_aware=cfg.eval.time_aware)
    log.info(
        "%s: %s with %d parameters on %s", run_dir, cfg.model.name, model.num_parameters(), device
    )
    state = fit(
        model,
        kg,
        stages=cfg.stages,
        train=cfg.train,
        seed=cfg.seed,
        run_dir=run_dir,
        meta=meta,
        device=device,
        valid_filter=valid_filter,
        eval_kwargs=ev,
        teachers=teachers,
        resume=ckpt,
    )
    best = run_dir / "best.safetensors"
    if best.is_file():
        load_model(load_checkpoint(best), model)
    metrics = evaluate(
        model,
        kg,
        cfg.eval.split,
        filter_index=valid_filter,
        progress=cfg.train.progress,
        batch_size=cfg.eval.batch_size,
        **ev,
    )
    _write_results(
        run_dir,
        cfg,
        kg,
        model,
        metrics,
        extra={
            "best_valid_mrr": state.best_value,
            "best_epoch": state.best_epoch,
            "epochs": state.epoch,
            "train_seconds": round(state.train_seconds, 2),
            "teachers": {name: describe_teacher(t) for name, t in teachers.items()},
            # text-based models: which texts were encoded, from which sources, how many fell back to ids
            **({"text": model.text_report} if hasattr(model, "text_report") else {}),
        },
    )
    return RunResult(run_dir=run_dir, metrics=metrics, model=model)


def distill(
    cfg: RunConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    runs_root: str | Path = "runs",
) -> RunResult:
    """Train a student against the config's ``teachers`` (a :func:`train` run that needs at least one teacher)."""
    if cfg is not None and not cfg.teachers:
        raise ConfigError(
            "config key 'teachers': distillation needs at least one teacher "
            "(e.g. teachers: {kge: {name: checkpoint, path: runs/<teacher run>}})"
        )
    return train(cfg, out=out, resume=resume, runs_root=runs_root)


def ensure_run(cfg_raw: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Train, resume or reuse the run of ``cfg_raw`` in ``run_dir``; returns its ``metrics.json``.

    A finished run is reused, an interrupted one (a ``last.safetensors``, no metrics yet) resumed, else the run is
    trained from the start: a driver of many runs survives a kill and only does what is missing. A folder holding
    a run of a different config is an error (never silently reused).
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
        train(resume=run_dir)
    else:
        log.info("training %s", run_dir)
        train(cfg, out=run_dir)
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
    from kgdistill.models.text import encode_kg
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
        _, _, _, report = encode_kg(
            kg, encoder=encoder, text=text, cache_dir=cache_dir, progress=progress
        )
        out.update(encoder=report["encoder"], dim=report["dim"])
    return out


def _eval_kwargs(ev: EvalConfig) -> dict[str, Any]:
    return {
        "ties": ev.ties,
        "ks": tuple(ev.ks),
        "time_aware": ev.time_aware,
        "filtered": ev.filtered,
    }


def _write_results(
    run_dir: Path, cfg: RunConfig, kg: KG, model: KGEModel, metrics: Metrics, extra: dict[str, Any]
) -> None:
    out = {
        "dataset": kg.name,
        "model": cfg.model.name,
        **metrics.to_dict(),
        "num_parameters": model.num_parameters(),
        "num_bytes": model.num_bytes(),
        "data_report": dict(kg.report),
        **extra,
    }
    write_json(run_dir / "metrics.json", out)
    title = (
        f"{cfg.model.name} on {kg.name}, {metrics.protocol['split']} ({metrics.protocol['filter']} filter, "
        f"{metrics.protocol['ties']} ties)"
    )
    (run_dir / "metrics.md").write_text(metrics_table(metrics.sides, title=title))
    records = JsonlLog(run_dir / "log.jsonl").records()
    if records:
        plot_curves(records, run_dir / "curves.png")


def _open(path: str | Path) -> tuple[Checkpoint, RunConfig]:
    ckpt = load_checkpoint(path)
    return ckpt, RunConfig.model_validate(ckpt.meta["config"])


def evaluate_run(
    path: str | Path,
    *,
    split: str = "test",
    overrides: dict[str, Any] | None = None,
    data_root: str | None = None,
    progress: bool = True,
) -> Metrics:
    """Evaluate a run folder or checkpoint on ``split`` with the protocol it was trained with.

    ``overrides`` replace keys of the ``eval`` section (``ties``, ``time_aware``, ``filtered``, ``ks``).
    """
    ckpt, cfg = _open(path)
    data = cfg.data.model_copy(update={"root": data_root}) if data_root else cfg.data
    kg = load_data(data)
    if kg.id_maps() != ckpt.meta["id_maps"]:
        raise CheckpointError(
            f"{ckpt.path}: the dataset '{kg.name}' read now does not match the vocabulary the "
            "model was trained on"
        )
    model = load_model(ckpt).to(resolve_device(cfg.train.device))
    ev = validate_section(
        EvalConfig, {**cfg.eval.model_dump(), "split": split, **(overrides or {})}, "eval"
    )
    return evaluate(
        model, kg, ev.split, progress=progress, batch_size=ev.batch_size, **_eval_kwargs(ev)
    )


def _find(label: str, labels: list[str], kind: str) -> int:
    """Id of ``label``: exact, else ignoring case, ``<>`` and ``_`` vs space."""
    if label in labels:
        return labels.index(label)

    def norm(s: str) -> str:
        return s.strip().strip("<>").replace("_", " ").casefold()

    hits = [i for i, lab in enumerate(labels) if norm(lab) == norm(label)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise KGDistillError(
            f"{kind} '{label}' is ambiguous: {', '.join(labels[i] for i in hits[:5])}"
        )
    import difflib

    close = difflib.get_close_matches(label, labels, n=3)
    hint = f" (close: {', '.join(close)})" if close else ""
    raise KGDistillError(f"unknown {kind} '{label}'{hint}")


def predict(
    path: str | Path,
    *,
    relation: str,
    head: str | None = None,
    tail: str | None = None,
    time: str | None = None,
    k: int = 10,
) -> list[tuple[str, float]]:
    """Top-``k`` answers of ``(head, relation, ?, time)`` or ``(?, relation, tail, time)``, by label.

    Returns:
        ``(entity label, score)`` pairs, best first.
    """
    ckpt, _ = _open(path)
    ids = ckpt.meta["id_maps"]
    model = load_model(ckpt).eval()
    if (head is None) == (tail is None):
        raise KGDistillError("give exactly one of --head and --tail")
    r = _find(relation, ids["relation"], "relation")
    anchor = _find(head if head is not None else tail, ids["entity"], "entity")  # type: ignore[arg-type]
    if tail is not None:
        r += len(ids["relation"])
    spec = ckpt.time
    row = [anchor, r, 0]
    if spec.kind != "none":
        if time is None:
            raise KGDistillError(
                f"this model is temporal: give --time (e.g. {spec.labels[len(spec.labels) // 2]})"
            )
        row.append(spec.time_id(time))
    elif time is not None:
        raise KGDistillError("this model is static: it takes no --time")
    with torch.inference_mode():
        scores = model.score_all(torch.tensor([row]))[0]
    top = torch.topk(scores, min(k, len(scores)))
    return [(ids["entity"][i], float(s)) for s, i in zip(top.values, top.indices, strict=True)]


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
