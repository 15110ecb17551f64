"""A run, built once from a config: data, features, model, teachers, device and validation filter.

:class:`Run` is what ``train``, ``distill``, resume, the benchmarks and the tests share: the one place where a
config becomes objects, in the data-flow order config -> data -> features -> model and teachers. Training
(:meth:`Run.fit`), evaluation (:meth:`Run.evaluate`) and the results of a run folder (:meth:`Run.write_results`)
are small methods over it; the training loop itself is :func:`kgdistill.train.fit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgdistill import __version__, dist
from kgdistill.checkpoint import Checkpoint, load_checkpoint, load_model
from kgdistill.compare import filter_label
from kgdistill.config import DataConfig, EvalConfig, RunConfig
from kgdistill.data.datasets import load_kg
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.distill import TEACHERS, teacher_from_spec
from kgdistill.distill.teachers import KGETeacher, Teacher, describe_teacher
from kgdistill.errors import ConfigError
from kgdistill.evaluate import Metrics, evaluate, evaluate_model
from kgdistill.features import TEXT_OPTIONS, text_features
from kgdistill.io import write_json
from kgdistill.models.base import KGEModel, Vocab
from kgdistill.models.history import history_features, history_meta
from kgdistill.models.zoo import MODELS, build_model, feature_options, is_temporal, model_features
from kgdistill.objective import Objective
from kgdistill.plm.causal import LM_OPTIONS, lm_features
from kgdistill.plm.contexts import CONTEXT_FILLED, context_tokens
from kgdistill.plm.features import PLM_OPTIONS, plm_features
from kgdistill.registry import check_kwargs
from kgdistill.report import metrics_table, plot_curves
from kgdistill.runs import JsonlLog, resolve_device
from kgdistill.shard import check_config as check_sharding
from kgdistill.shard import evaluate_sharded, is_sharded
from kgdistill.train import FitState, fit
from kgdistill.vocab import GraphVocab, check_graph, record_vocab

__all__ = ["Run", "check", "eval_kwargs", "load_data"]

log = logging.getLogger(__name__)


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
    """Validate what the config schema cannot: registry names, their keys and values (by type), model/data
    compatibility and the objectives. Cheap: call it before reading any data.

    Args:
        kg: the data, when read (adds the model/data checks).
        teacher_fields: teacher name -> fields of its output (``None``: not known yet, only the name is checked).
    """
    name = cfg.model.name
    kwargs = cfg.model.kwargs()
    options = feature_options(name)
    check_kwargs(
        MODELS.get(name),
        {k: v for k, v in kwargs.items() if k not in options},
        where="model",
        context={"vocab": None, "features": None},
        also=options,
    )
    if "text" in model_features(name):
        check_kwargs(
            text_features,
            {k: v for k, v in kwargs.items() if k in TEXT_OPTIONS},
            where="model",
            context={"kg": None, "progress": None},
        )
    if "plm" in model_features(name):
        check_kwargs(
            plm_features,
            {k: v for k, v in kwargs.items() if k in PLM_OPTIONS},
            where="model",
            context={"kg": None, "progress": None},
        )
    if "lm" in model_features(name):
        check_kwargs(
            lm_features,
            {k: v for k, v in kwargs.items() if k in LM_OPTIONS},
            where="model",
            context={"kg": None, "progress": None},
        )
    if not isinstance(kwargs.get("history", False), bool):
        raise ConfigError(f"config key 'model.history': {kwargs['history']!r} is not true or false")
    if isinstance(kwargs.get("context"), dict):
        check_kwargs(
            context_tokens, kwargs["context"], where="model.context", context=CONTEXT_FILLED
        )
    for t_name, spec in cfg.teachers.items():
        if "name" not in spec:
            raise ConfigError(
                f"config key 'teachers.{t_name}.name' is missing (one of {', '.join(TEACHERS.names())})"
            )
        t_kwargs = {k: v for k, v in spec.items() if k != "name"}
        check_kwargs(
            TEACHERS.get(spec["name"]), t_kwargs, where=f"teachers.{t_name}", context={"kg": None}
        )
    check_sharding(cfg)
    if kg is not None and is_temporal(name) and not kg.temporal:
        raise ConfigError(
            f"config key 'model.name': '{name}' is temporal but dataset '{kg.name}' has no time column"
        )
    for i, stage in enumerate(cfg.stages):
        Objective.build(
            [t.as_dict() for t in stage.objective],
            teachers=teacher_fields or {},
            candidates=cfg.train.negatives > 0 or cfg.train.negative_sampling == "in_batch",
            where=f"stages.{i}.objective",
        )


def eval_kwargs(ev: EvalConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`kgdistill.evaluate.evaluate` for an ``eval`` section."""
    return {
        "ties": ev.ties,
        "ks": tuple(ev.ks),
        "time_aware": ev.time_aware,
        "time_filter": ev.time_filter,
        "filtered": ev.filtered,
    }


@dataclass
class Run:
    """Everything a run is made of (see the module docstring).

    Attributes:
        cfg: the validated config.
        kg: the graph (with its time protocol or multi-KG view applied).
        device: where the model and teachers live.
        model: the model (student or standalone), built from the features.
        teachers: frozen teachers by name, answering in the graph's ids.
        valid_filter: the filter index of validation and the final evaluation.
        feature_meta: what each feature kind records in checkpoints (width, text sources, encoder).
    """

    cfg: RunConfig
    kg: KG
    device: torch.device
    model: KGEModel
    teachers: dict[str, Teacher] = field(default_factory=dict)
    valid_filter: FilterIndex | None = None
    feature_meta: dict[str, Any] = field(default_factory=dict)
    retriever: KGEModel | None = None

    @classmethod
    def build(
        cls, cfg: RunConfig, *, checkpoint: Checkpoint | None = None, progress: bool = True
    ) -> Run:
        """Read the data, compute the model's features, build the model and the teachers.

        Args:
            checkpoint: resume from it: the model is rebuilt from its stored spec and loaded with its weights
                (features come from its state dict, nothing is encoded again).
        """
        check(cfg, teacher_fields=dict.fromkeys(cfg.teachers))
        kg = load_data(cfg)
        check(cfg, kg, teacher_fields=dict.fromkeys(cfg.teachers))
        # under torchrun, cuda is each rank's own cuda:LOCAL_RANK
        device = dist.local_device(resolve_device(cfg.train.device))
        if device.type == "cuda" and cfg.train.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        vocab = Vocab(kg.num_entities, kg.num_relations, kg.time.labels)
        if checkpoint is not None:
            spec = checkpoint.meta["model"]
            model = load_model(checkpoint)
            check_graph(
                model, kg, what=str(checkpoint.path)
            )  # the data changed since the checkpoint
            feature_meta = dict(spec.get("features", {}))
        else:
            features = cls._features(cfg, kg, progress)
            model = build_model({"name": cfg.model.name, **cfg.model.kwargs()}, vocab, features)
            feature_meta = {
                kind: history_meta(f) if kind == "history" else f.meta()
                for kind, f in features.items()
            }
        record_vocab(model, GraphVocab.of_kg(kg))  # the graph's name and labels, for later checks
        teachers = {
            name: teacher_from_spec(name, spec, kg, device) for name, spec in cfg.teachers.items()
        }
        return cls(
            cfg=cfg,
            kg=kg,
            device=device,
            model=model,
            teachers=teachers,
            valid_filter=FilterIndex.build(
                kg, time_aware=cfg.eval.time_aware, time_filter=cfg.eval.time_filter
            ),
            feature_meta=feature_meta,
            retriever=_retriever(cfg.eval.retriever, kg, device),
        )

    def rerank(self) -> dict[str, Any]:
        """``retriever``, ``k`` and ``mix`` of :func:`~kgdistill.evaluate.evaluate_model` when ``eval.retriever``
        is set."""
        if self.retriever is None:
            return {}
        ev = self.cfg.eval
        return {"retriever": self.retriever, "k": ev.rerank_k, "mix": ev.rerank_mix}

    @staticmethod
    def _features(cfg: RunConfig, kg: KG, progress: bool) -> dict[str, Any]:
        """The features the configured model is built from, computed now (text: encoded through the cache;
        plm: tokenised, the encoder's weights read)."""
        out: dict[str, Any] = {}
        if "text" in model_features(cfg.model.name):
            options = {k: v for k, v in cfg.model.kwargs().items() if k in TEXT_OPTIONS}
            out["text"] = text_features(kg, progress=progress, **options)
        if "plm" in model_features(cfg.model.name):
            options = {k: v for k, v in cfg.model.kwargs().items() if k in PLM_OPTIONS}
            out["plm"] = plm_features(kg, progress=progress, **options)
        if "lm" in model_features(cfg.model.name):
            options = {k: v for k, v in cfg.model.kwargs().items() if k in LM_OPTIONS}
            out["lm"] = lm_features(kg, progress=progress, **options)
        if cfg.model.kwargs().get("history"):
            out["history"] = history_features(kg)
        return out

    def meta(self) -> dict[str, Any]:
        """Checkpoint metadata shared by every save: config, model spec and features, id maps, time protocol."""
        cfg, kg = self.cfg, self.kg
        options = feature_options(cfg.model.name)
        return {
            "kgdistill_version": __version__,
            "config": cfg.model_dump(mode="json"),
            "model": {
                "name": cfg.model.name,
                "kwargs": {k: v for k, v in cfg.model.kwargs().items() if k not in options},
                "features": self.feature_meta,
            },
            "id_maps": kg.id_maps(),
            "time": kg.time.to_dict(),
            "data": {
                "name": kg.name,
                "protocol": cfg.data.protocol(),
                **({"multi": cfg.data.multi.model_dump()} if cfg.data.multi else {}),
            },
            "num_parameters": self.model.num_parameters(),
        }

    def fit(
        self,
        run_dir: Path,
        *,
        resume: Checkpoint | None = None,
        on_valid: Callable[[int, float], None] | None = None,
    ) -> FitState:
        """Train through the config's stages into ``run_dir`` (see :func:`kgdistill.train.fit`)."""
        assert self.valid_filter is not None
        log.info(
            "%s: %s with %d parameters on %s",
            run_dir,
            self.cfg.model.name,
            self.model.num_parameters(),
            self.device,
        )
        return fit(
            self.model,
            self.kg,
            stages=self.cfg.stages,
            train=self.cfg.train,
            seed=self.cfg.seed,
            run_dir=run_dir,
            meta=self.meta(),
            device=self.device,
            valid_filter=self.valid_filter,
            eval_kwargs={**eval_kwargs(self.cfg.eval), **self.rerank()},
            teachers=self.teachers,
            resume=resume,
            on_valid=on_valid,
        )

    def evaluate(self, split: str | None = None, *, progress: bool | None = None) -> Metrics:
        """The model's metrics on ``split`` (default: the config's ``eval.split``) under the config's protocol."""
        ev = self.cfg.eval
        rank = evaluate_sharded if is_sharded(self.model) else evaluate_model
        metrics = rank(
            self.model,
            self.kg,
            split or ev.split,
            filter_index=self.valid_filter,
            progress=self.cfg.train.progress if progress is None else progress,
            batch_size=ev.batch_size,
            max_queries=ev.max_queries,
            **eval_kwargs(ev),
            **self.rerank(),
        )
        if self.retriever is not None:
            metrics.protocol["rerank"]["retriever_checkpoint"] = ev.retriever
        return metrics

    def retention(self, metrics: Metrics) -> dict[str, dict[str, float]]:
        """What the student keeps of each checkpoint teacher: its share of the teacher's MRR on the same split
        and protocol, and its share of the teacher's parameters (the headline numbers of a distillation)."""
        out: dict[str, dict[str, float]] = {}
        split = metrics.protocol["split"]
        for name, teacher in self.teachers.items():
            if not isinstance(teacher, KGETeacher):
                continue  # a cache has no model to rank with
            t_metrics = self.evaluate_model(teacher, split)
            t_params = teacher.model.num_parameters()
            out[name] = {
                "teacher_mrr": t_metrics.mrr,
                "student_mrr": metrics.mrr,
                "mrr_share": metrics.mrr / t_metrics.mrr if t_metrics.mrr > 0 else float("nan"),
                "teacher_parameters": t_params,
                "student_parameters": self.model.num_parameters(),
                "parameter_share": self.model.num_parameters() / t_params,
            }
        return out

    def evaluate_model(self, model: Any, split: str) -> Metrics:
        """Any model with ``score_all`` (a teacher, say) on ``split`` under this run's protocol."""
        ev = self.cfg.eval
        return evaluate(
            model,
            self.kg,
            split,
            filter_index=self.valid_filter,
            batch_size=ev.batch_size,
            **eval_kwargs(ev),
        )

    def write_results(
        self,
        run_dir: Path,
        metrics: Metrics,
        state: FitState,
        *,
        retention: dict[str, dict[str, float]] | None = None,
    ) -> None:
        """``metrics.json`` (numbers with their protocol, sizes, data report, teachers, features),
        ``metrics.md`` and ``curves.png``; ``retention``: :meth:`retention`'s answer when already known."""
        cfg, kg, model = self.cfg, self.kg, self.model
        out = {
            "dataset": kg.name,
            "model": cfg.model.name,
            **metrics.to_dict(),
            "num_parameters": model.num_parameters(),
            "num_bytes": model.num_bytes(),
            "data_report": dict(kg.report),
            "best_valid_mrr": state.best_value,
            "best_epoch": state.best_epoch,
            "epochs": state.epoch,
            "train_seconds": round(state.train_seconds, 2),
            "teachers": {name: describe_teacher(t) for name, t in self.teachers.items()},
            "retention": self.retention(metrics) if retention is None else retention,
            # text-based models: which texts were encoded, from which sources, how many fell back to ids
            **(
                {"text": self.feature_meta["text"].get("report", {})}
                if "text" in self.feature_meta
                else {}
            ),
            # a bi-encoder: the texts' sources and how many were cut to its window
            **(
                {"plm": self.feature_meta["plm"].get("report", {})}
                if "plm" in self.feature_meta
                else {}
            ),
            # a generative model: the texts' sources and how many were cut to their budgets
            **(
                {"lm": self.feature_meta["lm"].get("report", {})}
                if "lm" in self.feature_meta
                else {}
            ),
        }
        write_json(run_dir / "metrics.json", out)
        p = metrics.protocol
        title = f"{cfg.model.name} on {kg.name}, {p['split']} ({filter_label(p)} filter, {p['ties']} ties)"
        (run_dir / "metrics.md").write_text(metrics_table(metrics.sides, title=title))
        records = JsonlLog(run_dir / "log.jsonl").records()
        if records:
            plot_curves(records, run_dir / "curves.png", title=f"{cfg.model.name} on {kg.name}")


def _retriever(path: str | None, kg: KG, device: torch.device) -> KGEModel | None:
    """The model of ``eval.retriever`` (a run folder or checkpoint on ``kg``'s graph), or ``None``."""
    if path is None:
        return None
    from kgdistill.errors import CheckpointError

    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        raise ConfigError(f"config key 'eval.retriever': {e}") from None
    check_graph(GraphVocab.of_checkpoint(ckpt.meta), kg, what=str(ckpt.path))
    return load_model(ckpt).to(device).eval()
