"""The training loop: stages of objectives, validation with early stopping, exact resume after a kill.

Everything random in an epoch (the shuffle and the sampled negatives) comes from a generator seeded with
``(seed, epoch)``, and ``last.safetensors`` holds the model, optimiser, objective and loop state after every
epoch. Resuming therefore replays exactly the epochs an uninterrupted run would have done: the final metrics
are identical (tested with ``kill -9``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from kgdistill.checkpoint import Checkpoint, save_checkpoint
from kgdistill.config import StageConfig, TrainConfig
from kgdistill.data.batching import Batch, both_directions, sample_candidates
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.distill.teachers import ALL_FIELDS, Teacher
from kgdistill.errors import KGDistillError
from kgdistill.evaluate import evaluate
from kgdistill.models.base import KGEModel, ModelOutput
from kgdistill.objective import Objective
from kgdistill.runs import JsonlLog

__all__ = ["FitState", "build_objectives", "fit", "make_optimizer", "provided"]

log = logging.getLogger(__name__)


@dataclass
class FitState:
    """Where the loop stands; saved in every ``last`` checkpoint."""

    stage: int = 0
    stage_epoch: int = 0
    epoch: int = 0
    best_value: float = -1.0
    best_epoch: int = -1
    bad_evals: int = 0
    stage_stopped: bool = False
    train_seconds: float = 0.0
    log_lines: int = 0


def make_optimizer(
    params: Sequence[torch.nn.Parameter], name: str, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``adam``, ``adamw``, ``adagrad`` or ``sgd`` from :mod:`torch.optim`."""
    cls = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "adagrad": torch.optim.Adagrad,
        "sgd": torch.optim.SGD,
    }[name]
    return cls(params, lr=lr, weight_decay=weight_decay)  # type: ignore[no-any-return]


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fit(
    model: KGEModel,
    kg: KG,
    *,
    stages: Sequence[StageConfig],
    train: TrainConfig,
    seed: int,
    run_dir: Path,
    meta: Mapping[str, Any],
    device: torch.device,
    valid_filter: FilterIndex,
    eval_kwargs: Mapping[str, Any],
    teachers: Mapping[str, Teacher] | None = None,
    resume: Checkpoint | None = None,
) -> FitState:
    """Train ``model`` through ``stages``, validating on ``valid`` and checkpointing every epoch.

    Args:
        model: the model (student or standalone), already built.
        kg: the graph. stages / train: the loop's configuration. seed: seeds every epoch's generator.
        run_dir: receives ``log.jsonl``, ``best.safetensors`` and ``last.safetensors``.
        meta: checkpoint metadata shared by every save (config, model spec, id maps, time spec).
        valid_filter: the filter for validation. eval_kwargs: ``ties`` / ``ks`` / ``time_aware``.
        teachers: frozen teachers by name (see :mod:`kgdistill.distill.teachers`).
        resume: a ``last`` checkpoint to continue from.

    A stage that stops early hands its current weights to the next stage; ``best.safetensors`` is the best
    validation MRR over all stages.

    Returns:
        The final :class:`FitState` (best validation MRR and epoch, time spent).
    """
    teachers = dict(teachers or {})
    model.to(device)
    queries_all = both_directions(kg.splits["train"], kg.num_relations).to(device)
    n = len(queries_all)
    journal = JsonlLog(run_dir / "log.jsonl")
    state = FitState()
    if resume is not None:
        state = FitState(**resume.meta["state"])
        journal.truncate(state.log_lines)
    elif journal.lines:
        journal.truncate(0)
    neg = train.negatives
    objectives = build_objectives(
        model, stages, teachers, queries_all[:2], candidates=neg > 0, kg=kg
    )
    for stage_idx in range(state.stage, len(stages)):
        stage = stages[stage_idx]
        objective = objectives[stage_idx]
        params = [*model.parameters(), *objective.parameters()]
        optimizer = make_optimizer(
            params, stage.optimizer or train.optimizer, stage.lr or train.lr, train.weight_decay
        )
        if resume is not None and state.stage == stage_idx and state.stage_epoch > 0:
            objective.load_state_dict(resume.group("objective"))
            opt_state = resume.optimizer_state()
            if opt_state is not None:
                optimizer.load_state_dict(opt_state)
        used = {t: objective.reads(t) for t in sorted({t for t in objective.teachers if t})}
        log.info("stage %d: %d epochs, objective %s", stage_idx, stage.epochs, objective)
        while state.stage_epoch < stage.epochs and not state.stage_stopped:
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(seed * 1_000_003 + state.epoch)
            perm = torch.randperm(n, generator=gen).to(device)
            sums: dict[str, torch.Tensor] = {}
            total = torch.zeros((), device=device)
            steps = range(0, n, train.batch_size)
            bar = tqdm(
                steps,
                desc=f"stage {stage_idx} epoch {state.stage_epoch + 1}/{stage.epochs}",
                leave=False,
                disable=None if train.progress else True,
            )
            model.train()
            for i in bar:
                q = queries_all[perm[i : i + train.batch_size]]
                cand = sample_candidates(q, kg.num_entities, neg, gen) if neg else None
                batch = Batch(q, cand)
                with _autocast(device, train.amp):
                    out = model(q, cand)
                    with torch.no_grad():
                        t_outs = {
                            name: teachers[name](q, cand, need) for name, need in used.items()
                        }
                    loss, parts = objective(out, t_outs, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach().float()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0) + v.float()
            steps_n = max(len(steps), 1)
            mean_loss = float(total) / steps_n
            state.epoch += 1
            state.stage_epoch += 1
            state.train_seconds += time.perf_counter() - t0
            if not math.isfinite(mean_loss):
                raise KGDistillError(
                    f"training diverged in epoch {state.epoch} (loss {mean_loss}); the last good "
                    f"checkpoint is {run_dir / 'last.safetensors'}; lower train.lr"
                )
            journal.write(
                event="epoch",
                stage=stage_idx,
                epoch=state.epoch,
                loss=mean_loss,
                **{k: float(v) / steps_n for k, v in sums.items()},
                seconds=round(time.perf_counter() - t0, 3),
            )
            if state.stage_epoch % train.eval_every == 0 or state.stage_epoch == stage.epochs:
                _validate(
                    model,
                    kg,
                    state,
                    journal,
                    run_dir,
                    meta,
                    valid_filter,
                    eval_kwargs,
                    train,
                    stage_idx,
                )
            state.log_lines = journal.lines
            save_checkpoint(
                run_dir / "last.safetensors",
                model=model,
                optimizer=optimizer,
                objective=objective,
                meta={**meta, "state": asdict(state), "epoch": state.epoch, "stage": stage_idx},
                rng=True,
            )
        state.stage += 1
        state.stage_epoch = 0
        state.bad_evals = 0
        state.stage_stopped = False
    state.stage = len(stages)
    return state


def provided(out: ModelOutput) -> frozenset[str]:
    """Fields an output actually carries (``scores`` counts when it is not empty)."""
    have = {f for f in ("h", "r", "t", "time_table") if getattr(out, f) is not None}
    if out.scores.numel():
        have.add("scores")
    return frozenset(have)


def build_objectives(
    model: KGEModel,
    stages: Sequence[StageConfig],
    teachers: Mapping[str, Teacher],
    probe: torch.Tensor,
    *,
    candidates: bool,
    kg: KG | None = None,
) -> list[Objective]:
    """Build and check every stage's objective before the first step, from outputs on a 2-query probe.

    A term that reads a field the student or its teacher does not provide (FitNet on a score-only cached
    teacher, say) fails here, not in a later stage.
    """
    with torch.no_grad():
        s_out = model(probe)
        t_outs = {name: teacher(probe, None, ALL_FIELDS) for name, teacher in teachers.items()}
    fields = {name: provided(out) for name, out in t_outs.items()}
    objectives = []
    for i, stage in enumerate(stages):
        objective = Objective.build(
            [t.as_dict() for t in stage.objective],
            teachers=fields,
            student=provided(s_out),
            candidates=candidates,
            where=f"stages.{i}.objective",
        )
        if kg is not None:
            objective.bind(kg)
        objective.setup(s_out, t_outs)
        objectives.append(objective.to(probe.device))
    return objectives


def _validate(
    model: KGEModel,
    kg: KG,
    state: FitState,
    journal: JsonlLog,
    run_dir: Path,
    meta: Mapping[str, Any],
    valid_filter: FilterIndex,
    eval_kwargs: Mapping[str, Any],
    train: TrainConfig,
    stage_idx: int,
) -> None:
    metrics = evaluate(
        model,
        kg,
        "valid",
        filter_index=valid_filter,
        max_queries=train.eval_max_queries,
        **eval_kwargs,
    )
    improved = metrics.mrr > state.best_value
    gain = metrics.mrr > state.best_value + train.min_delta
    journal.write(
        event="valid",
        stage=stage_idx,
        epoch=state.epoch,
        improved=improved,
        **metrics.sides["both"],
    )
    log.info("epoch %d valid MRR %.4f%s", state.epoch, metrics.mrr, " (best)" if improved else "")
    if improved:
        state.best_value, state.best_epoch = metrics.mrr, state.epoch
        save_checkpoint(
            run_dir / "best.safetensors",
            model=model,
            meta={
                **meta,
                "epoch": state.epoch,
                "stage": stage_idx,
                "best": {"metric": "valid_mrr", "value": metrics.mrr, "epoch": state.epoch},
            },
        )
    state.bad_evals = 0 if gain else state.bad_evals + 1
    if train.patience and state.bad_evals >= train.patience:
        state.stage_stopped = True
        journal.write(
            event="early_stop", stage=stage_idx, epoch=state.epoch, best_epoch=state.best_epoch
        )
