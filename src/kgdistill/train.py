"""The training loop: stages of objectives, validation with early stopping, exact resume after a kill.

Everything random in an epoch (the shuffle and the sampled negatives) comes from a generator seeded with
``(seed, epoch)``, and ``last.safetensors`` holds the model, optimiser, objective and loop state (by default
after every epoch; ``train.checkpoint_every`` spaces the writes for big models). Resuming therefore replays
exactly the epochs an uninterrupted run would have done: the final metrics are identical (tested with
``kill -9``). The learning-rate schedule is a function of the step, so it resumes exactly too.

For transformer models (and any model): parameter groups (``train.param_groups``: e.g. a pre-trained encoder
at a lower learning rate than a new head), a schedule with warm-up (``train.scheduler`` or per stage),
gradient clipping (``train.grad_clip``), gradient accumulation (``train.accumulate``) and in-batch negatives
(``train.negative_sampling: in_batch``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from kgdistill import dist, shard
from kgdistill.checkpoint import Checkpoint, save_checkpoint
from kgdistill.config import ParamGroup, SchedulerConfig, StageConfig, TrainConfig
from kgdistill.data.batching import (
    both_directions,
    in_batch_candidates,
    sample_candidates,
    shared_candidates,
)
from kgdistill.data.filters import FilterIndex
from kgdistill.data.hard_negatives import HardNegatives
from kgdistill.data.kg import KG
from kgdistill.distill.teachers import ALL_FIELDS, Teacher
from kgdistill.errors import ConfigError, TrainingDiverged
from kgdistill.evaluate import evaluate_model
from kgdistill.models.base import KGEModel, ModelOutput
from kgdistill.objective import Objective
from kgdistill.runs import JsonlLog
from kgdistill.types import TAIL, BoolTensor, LongTensor

__all__ = [
    "FitState",
    "build_objectives",
    "fit",
    "lr_factor",
    "make_optimizer",
    "param_groups",
    "provided",
]

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


#: optimisers with a fused kernel, and the device types it runs on (torch >= 2.4)
_FUSED_DEVICES = {
    "adam": {"cpu", "cuda"},
    "adamw": {"cpu", "cuda"},
    "adagrad": {"cpu"},
    "sgd": {"cpu", "cuda"},
}


def _can_fuse(params: Sequence[Any], name: str) -> bool:
    """Whether every parameter (tensors or param groups) is a dense floating tensor on one device type that
    ``name``'s fused kernel supports."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    kinds = {t.device.type for t in tensors}
    return (
        len(kinds) == 1
        and kinds <= _FUSED_DEVICES.get(name, set())
        and all(t.is_floating_point() and not t.is_sparse for t in tensors)
    )


def make_optimizer(
    params: Sequence[torch.nn.Parameter] | Sequence[dict[str, Any]],
    name: str,
    lr: float,
    weight_decay: float,
    *,
    fused: bool = True,
) -> torch.optim.Optimizer:
    """``adam``, ``adamw``, ``adagrad`` or ``sgd`` from :mod:`torch.optim` (``params``: tensors or param groups).

    ``fused``: PyTorch's fused kernel when it exists for the parameters' device (``train.fused_optimizer``),
    else the default (``foreach``) path.
    """
    cls = {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "adagrad": torch.optim.Adagrad,
        "sgd": torch.optim.SGD,
    }[name]
    params = list(params)
    if fused and _can_fuse(params, name):
        return cls(params, lr=lr, weight_decay=weight_decay, fused=True)  # type: ignore[no-any-return]
    return cls(params, lr=lr, weight_decay=weight_decay)  # type: ignore[no-any-return]


def param_groups(
    named: Sequence[tuple[str, torch.nn.Parameter]],
    groups: Sequence[ParamGroup],
    lr: float,
    wd: float,
) -> list[dict[str, Any]]:
    """Split trainable parameters into optimiser groups: each goes to the first group whose patterns match its
    name (``fnmatch``), else to the default group (``lr``, ``wd``). Frozen parameters are left out.

    Raises:
        ConfigError: a group matches no parameter (a misspelt pattern would otherwise silently do nothing).
    """
    out: list[dict[str, Any]] = [{"params": [], "lr": lr, "weight_decay": wd}]
    out += [
        {
            "params": [],
            "lr": g.lr or lr,
            "weight_decay": wd if g.weight_decay is None else g.weight_decay,
        }
        for g in groups
    ]
    for name, p in named:
        if not p.requires_grad:
            continue
        hit = next(
            (i for i, g in enumerate(groups) if any(fnmatch.fnmatch(name, m) for m in g.match)),
            None,
        )
        out[0 if hit is None else hit + 1]["params"].append(p)
    for i, g in enumerate(groups):
        if not out[i + 1]["params"]:
            raise ConfigError(
                f"config key 'train.param_groups.{i}.match': {g.match} matches no trainable parameter"
            )
    return [g for g in out if g["params"]]


def lr_factor(step: int, total: int, schedule: SchedulerConfig) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based) of a stage of ``total``."""
    warmup = schedule.warmup if schedule.warmup >= 1 else schedule.warmup * total
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule.name == "constant":
        return 1.0
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    if schedule.name == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class _Stage:
    """What one stage trains with: its objective, optimiser, schedule and the teacher fields it reads."""

    index: int
    config: StageConfig
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    params: list[torch.nn.Parameter]
    used: dict[str, frozenset[str]]
    steps_per_epoch: int
    aux: frozenset[str] = frozenset()  # the model's auxiliary losses the objective reads
    loss: torch.nn.Module | None = (
        None  # model + teachers + objective (under DDP with several ranks)
    )


def _open_stage(
    model: KGEModel,
    objective: Objective,
    index: int,
    stage: StageConfig,
    train: TrainConfig,
    num_batches: int,
    state: FitState,
    resume: Checkpoint | None,
) -> _Stage:
    """The stage's optimiser (parameter groups) and LR schedule, restored exactly when resuming inside it."""
    named = [
        *model.named_parameters(),
        *(("objective." + n, p) for n, p in objective.named_parameters()),
    ]
    lr = stage.lr or train.lr
    groups = param_groups(named, train.param_groups, lr, train.weight_decay)
    optimizer = make_optimizer(
        groups,
        stage.optimizer or train.optimizer,
        lr,
        train.weight_decay,
        fused=train.fused_optimizer,
    )
    resuming = resume is not None and state.stage == index and state.stage_epoch > 0
    if resuming:
        assert resume is not None
        objective.load_state_dict(resume.group("objective"))
        opt_state = resume.optimizer_state()
        if opt_state is not None and shard.is_sharded(model):
            # the checkpoint holds the whole table's state: this rank loads its rows
            opt_state = shard.local_optimizer_state(opt_state, optimizer, model)
        if opt_state is not None:
            optimizer.load_state_dict(opt_state)
    steps_per_epoch = math.ceil(num_batches / train.accumulate)
    total = steps_per_epoch * stage.epochs
    schedule = stage.scheduler or train.scheduler
    for g in optimizer.param_groups:  # the schedule scales each group's own learning rate
        g.setdefault("initial_lr", g["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total, schedule),
        last_epoch=state.stage_epoch * steps_per_epoch - 1 if resuming else -1,
    )
    return _Stage(
        index=index,
        config=stage,
        objective=objective,
        optimizer=optimizer,
        scheduler=scheduler,
        params=[p for g in optimizer.param_groups for p in g["params"]],
        used={t: objective.reads(t) for t in sorted({t for t in objective.teachers if t})},
        steps_per_epoch=steps_per_epoch,
        aux=model.aux_tasks & frozenset().union(*(t.reads for t in objective.terms)),
    )


def _candidates(
    q: LongTensor,
    kg: KG,
    train: TrainConfig,
    gen: torch.Generator,
    hard: HardNegatives | None = None,
) -> tuple[LongTensor | None, BoolTensor | None]:
    """The batch's candidates: all entities (``None``), uniform samples, hard negatives from another model's
    top-k, or in-batch negatives (with a mask)."""
    if train.negative_sampling == "in_batch":
        return in_batch_candidates(q, train.negatives or None, train.self_negatives)
    if hard is not None:
        return hard(q, gen), None
    if train.negatives:
        draw = shared_candidates if train.negative_sampling == "shared" else sample_candidates
        return draw(q, kg.num_entities, train.negatives, gen), None
    return None, None


def _compiled(step: torch.nn.Module, train: TrainConfig) -> torch.nn.Module:
    """``step`` under ``torch.compile`` with ``train.compile``'s mode, or ``step`` itself (eager)."""
    if train.compile is None:
        return step
    return torch.compile(step, mode=train.compile)  # type: ignore[return-value]


def _epoch(
    model: KGEModel,
    kg: KG,
    stage: _Stage,
    queries: LongTensor,
    train: TrainConfig,
    gen: torch.Generator,
    device: torch.device,
    bar: tqdm | None,
    hard: HardNegatives | None = None,
) -> tuple[float, dict[str, float]]:
    """One pass over ``queries`` (already shuffled): the mean loss and the mean of every term.

    With several ranks (:mod:`kgdistill.dist`) the batches are global: each rank runs its rows of each, weighted
    by their share, and the means are summed over the ranks.
    """
    assert stage.loss is not None
    ranks = dist.world()
    sharded = isinstance(stage.loss, shard.ShardedStep)
    sums: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=device)
    starts = range(0, len(queries), train.batch_size)
    # each batch's share of its accumulation window (by size), so a window's gradient is that of the mean loss
    # over all its queries: exactly one batch of accumulate * batch_size, the last window included
    sizes = [min(train.batch_size, len(queries) - i) for i in starts]
    window = [sum(sizes[w : w + train.accumulate]) for w in range(0, len(sizes), train.accumulate)]
    model.train()
    stage.optimizer.zero_grad(set_to_none=True)
    for n, i in enumerate(starts, start=1):
        q = queries[i : i + train.batch_size]
        size = len(q)
        cand, cand_mask = _candidates(q, kg, train, gen, hard)
        q, cand, cand_mask, share = dist.batch_rows(q, cand, cand_mask)
        sync = n % train.accumulate == 0 or n == len(starts)
        with dist.no_sync(stage.loss, sync):
            with _autocast(device, train.amp):
                loss, parts = stage.loss(q, share) if sharded else stage.loss(q, cand, cand_mask)
            # DDP averages the ranks' gradients: a rank's weight is its share of the window times the ranks;
            # a sharded step's loss is the global batch's already (its replicated gradients are summed)
            weight = size / window[(n - 1) // train.accumulate]
            factor = share * ranks.size if ranks.active and not sharded else 1.0
            (loss * (weight * factor)).backward()
        if ranks.active:
            loss, parts = loss * share, {k: v * share for k, v in parts.items()}
        if sync:
            if sharded:
                stage.loss.reduce_gradients()  # type: ignore[operator]
            if train.grad_clip is not None and sharded:
                shard.clip_grad_norm(stage.loss, train.grad_clip)  # type: ignore[arg-type]
            elif train.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(stage.params, train.grad_clip)
            stage.optimizer.step()
            stage.scheduler.step()
            stage.optimizer.zero_grad(set_to_none=True)
        total += loss.detach().float()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0) + v.float()
        if bar is not None:
            bar.update(1)
    if ranks.active:  # the mean of the global batches' losses, the same on every rank
        summed = dist.all_sum(torch.stack([total, *sums.values()]))
        total, sums = summed[0], dict(zip(sums, summed[1:], strict=True))
    steps = max(len(starts), 1)
    return float(total) / steps, {k: float(v) / steps for k, v in sums.items()}


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
    on_valid: Callable[[int, float], None] | None = None,
) -> FitState:
    """Train ``model`` through ``stages``, validating on ``valid`` and checkpointing as configured.

    Args:
        model: the model (student or standalone), already built.
        kg: the graph. stages / train: the loop's configuration. seed: seeds every epoch's generator.
        run_dir: receives ``log.jsonl``, ``best.safetensors`` and ``last.safetensors``.
        meta: checkpoint metadata shared by every save (config, model spec, id maps, time spec).
        valid_filter: the filter for validation. eval_kwargs: ``ties`` / ``ks`` / ``time_aware`` / ``time_filter``
            (and ``retriever`` / ``k``: validation re-ranks a retriever's top-k,
            :func:`~kgdistill.evaluate.evaluate_model`).
        teachers: frozen teachers by name (see :mod:`kgdistill.distill.teachers`).
        resume: a ``last`` checkpoint to continue from.
        on_valid: called with ``(epoch, valid MRR)`` after each validation and that epoch's checkpoint (when
            ``train.checkpoint_every`` writes one), on rank 0; an exception it raises stops the run, which
            resumes from its last checkpoint (how ``kgdistill tune`` prunes a trial).

    A stage that stops early hands its current weights to the next stage; ``best.safetensors`` is the best
    validation MRR over all stages. One line per epoch is logged (loss terms, seconds, time left) whatever the
    output; in a terminal a progress bar covers the whole run.

    Under ``torchrun`` (:mod:`kgdistill.dist`) every rank calls this: ``train.batch_size`` is the global batch,
    split over the ranks; rank 0 writes the log and checkpoints, every rank takes rank 0's decisions.

    Returns:
        The final :class:`FitState` (best validation MRR and epoch, time spent).
    """
    teachers = dict(teachers or {})
    ranks = dist.init_from_env()
    if train.batch_size < ranks.size:
        raise ConfigError(
            f"config key 'train.batch_size': {train.batch_size} queries cannot be split over {ranks.size} "
            "processes (the batch is global: each process takes batch_size / processes of it)"
        )
    sharded = train.shard_entities and ranks.active
    if sharded:  # before the model goes to the device: only the rank's block does
        _shard(model, kg, ranks)
    model.to(device)
    queries_all = both_directions(kg.splits["train"], kg.num_relations).to(device)
    n = len(queries_all)
    journal = dist.journal(run_dir / "log.jsonl")
    state = FitState()
    if resume is not None:
        state = FitState(**resume.meta["state"])
        journal.truncate(state.log_lines)
    elif journal.lines:
        journal.truncate(0)
    sampled = train.negatives > 0 or train.negative_sampling == "in_batch"
    hard = (
        HardNegatives(
            str(train.hard_negatives),
            kg,
            negatives=train.negatives,
            fraction=train.hard_fraction,
            device=device,
        )
        if train.negative_sampling == "hard"
        else None
    )
    if sharded:
        # its terms (the cross-entropy, regularisers) have no width-dependent parameters: no probe pass
        objectives = [shard.build_objective(s, i, kg).to(device) for i, s in enumerate(stages)]
    else:
        objectives = build_objectives(
            model, stages, teachers, queries_all[:2], candidates=sampled, kg=kg
        )
    _warn_unused_aux(model, objectives)
    per_epoch = min(n, train.epoch_queries or n)
    num_batches = math.ceil(per_epoch / train.batch_size)
    left = sum(s.epochs for s in stages[state.stage :]) - state.stage_epoch
    bar = tqdm(
        total=left * num_batches,
        desc="training",
        unit="batch",
        disable=None if train.progress and dist.is_main() else True,
    )
    started, epochs_done = time.perf_counter(), 0
    with bar:
        for stage_idx in range(state.stage, len(stages)):
            stage = _open_stage(
                model,
                objectives[stage_idx],
                stage_idx,
                stages[stage_idx],
                train,
                num_batches,
                state,
                resume,
            )
            stage.loss = (
                shard.ShardedStep(model, stage.objective)
                if sharded
                else dist.parallel(
                    _compiled(dist.LossStep(model, stage.objective, teachers, stage.used), train),
                    device,
                )
            )
            log.info(
                "stage %d: %d epochs, objective %s", stage_idx, stage.config.epochs, stage.objective
            )
            while state.stage_epoch < stage.config.epochs and not state.stage_stopped:
                t0 = time.perf_counter()
                gen = torch.Generator().manual_seed(seed * 1_000_003 + state.epoch)
                # dropout (a text encoder's) draws from the global generators: seeded per epoch as well, so
                # that a resumed run draws the same masks
                torch.manual_seed(seed * 1_000_003 + state.epoch)
                perm = torch.randperm(n, generator=gen)[:per_epoch].to(device)
                with model.auxiliary(stage.aux):
                    mean_loss, terms = _epoch(
                        model, kg, stage, queries_all[perm], train, gen, device, bar, hard
                    )
                state.epoch += 1
                state.stage_epoch += 1
                seconds = time.perf_counter() - t0
                state.train_seconds += seconds
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(
                        f"training diverged in epoch {state.epoch} (loss {mean_loss}); the last good "
                        f"checkpoint is {run_dir / 'last.safetensors'}; lower train.lr"
                    )
                journal.write(
                    event="epoch",
                    stage=stage_idx,
                    epoch=state.epoch,
                    loss=mean_loss,
                    **terms,
                    lr=stage.optimizer.param_groups[0]["lr"],
                    seconds=round(seconds, 3),
                )
                epochs_done += 1
                _log_epoch(state, stage, mean_loss, terms, seconds, started, epochs_done, left)
                if (
                    state.stage_epoch % train.eval_every == 0
                    or state.stage_epoch == stage.config.epochs
                ):
                    valid_mrr = _validate(
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
                        early_stopping=stage.config.early_stopping,
                    )
                else:
                    valid_mrr = None
                state.log_lines = journal.lines
                _sync_state(state)
                last = state.stage_epoch == stage.config.epochs or state.stage_stopped
                if last or state.stage_epoch % train.checkpoint_every == 0:
                    _write(
                        run_dir / "last.safetensors",
                        model=model,
                        optimizer=stage.optimizer,
                        objective=stage.objective,
                        meta={
                            **meta,
                            "state": asdict(state),
                            "epoch": state.epoch,
                            "stage": stage_idx,
                        },
                        rng=True,
                    )
                dist.barrier()  # the other ranks wait for rank 0's checkpoint
                if on_valid is not None and valid_mrr is not None and dist.is_main():
                    on_valid(state.epoch, valid_mrr)
            state.stage += 1
            state.stage_epoch = 0
            state.bad_evals = 0
            state.stage_stopped = False
    state.stage = len(stages)
    dist.barrier()
    return state


def _shard(model: KGEModel, kg: KG, ranks: dist.World) -> None:
    """Keep this rank's block of the entity table (``train.shard_entities``), or one clear error."""
    reason = shard.unshardable_reason(model)
    if reason is not None:
        raise shard.refuse(f"the model cannot be sharded: {reason}")
    if kg.num_entities < ranks.size:
        raise shard.refuse(
            f"{kg.num_entities} entities cannot be split over {ranks.size} processes"
        )
    shard.shard_model(model, ranks.rank, ranks.size)
    log.info(
        "entity table sharded: rank %d holds rows [%d, %d) of %d",
        ranks.rank,
        model.entities.lo,  # type: ignore[union-attr]
        model.entities.hi,  # type: ignore[union-attr]
        kg.num_entities,
    )


def _write(
    path: Path,
    model: KGEModel,
    meta: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    objective: torch.nn.Module | None = None,
    rng: bool = False,
) -> None:
    """Rank 0 writes a checkpoint (every rank calls this); a sharded table and its optimiser state are first
    gathered whole on rank 0, so the file is the one a single process writes."""
    state: Any = model
    opt: Any = optimizer
    if shard.is_sharded(model):
        state = shard.gather_model_state(model)
        opt = None if optimizer is None else shard.gather_optimizer_state(optimizer, model)
    if dist.is_main():
        save_checkpoint(
            path, model=state, meta=dict(meta), optimizer=opt, objective=objective, rng=rng
        )


def _sync_state(state: FitState) -> None:
    """Rank 0's loop state (validation, early stopping, time spent) on every rank: every rank takes the
    same decisions."""
    if dist.world().active:
        for k, v in dist.broadcast(asdict(state)).items():
            setattr(state, k, v)


def _log_epoch(
    state: FitState,
    stage: _Stage,
    loss: float,
    terms: Mapping[str, float],
    seconds: float,
    started: float,
    done: int,
    left: int,
) -> None:
    """One INFO line per epoch: stage and epoch, the loss and each term, seconds, time left at this pace."""
    eta = (time.perf_counter() - started) / done * max(left - done, 0)
    parts = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
    log.info(
        "epoch %d (stage %d, %d/%d): loss %.4g (%s), %.1f s, about %s left",
        state.epoch,
        stage.index,
        state.stage_epoch,
        stage.config.epochs,
        loss,
        parts,
        seconds,
        _duration(eta),
    )


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _warn_unused_aux(model: KGEModel, objectives: Sequence[Objective]) -> None:
    """Log when the model could learn from an auxiliary task (contexts were given) but no stage asks for it."""
    read = frozenset().union(*(t.reads for o in objectives for t in o.terms))
    if model.aux_tasks and not model.aux_tasks & read:
        log.warning(
            "the model has contexts for the auxiliary task %s, but no stage's objective has that term: "
            "add {loss: %s, weight: ...} to a stage, or drop model.context",
            "/".join(sorted(model.aux_tasks)),
            sorted(model.aux_tasks)[0],
        )


def provided(out: ModelOutput) -> frozenset[str]:
    """Fields an output actually carries (``scores`` counts when it is not empty)."""
    have = {f for f in ("h", "r", "t", "time_table", "generation") if getattr(out, f) is not None}
    have |= set(out.aux)
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
    # a run with sampled candidates probes with candidates too: a text encoder then does not encode every
    # entity before the first step
    with torch.no_grad(), model.auxiliary(model.aux_tasks):
        s_out = model(probe, probe[:, TAIL : TAIL + 1] if candidates else None)
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
    *,
    early_stopping: bool = True,
) -> float:
    """Validate, log, save ``best`` when improved and update early stopping (``early_stopping``: the stage's
    ``early_stopping``; false: never stop it); returns the valid MRR."""
    rank = shard.evaluate_sharded if shard.is_sharded(model) else evaluate_model
    metrics = rank(
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
    if improved:
        _write(
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
    if early_stopping and train.patience and state.bad_evals >= train.patience:
        state.stage_stopped = True
        journal.write(
            event="early_stop", stage=stage_idx, epoch=state.epoch, best_epoch=state.best_epoch
        )
    return metrics.mrr
