"""``kgdistill tune``: an Optuna search over a run config's keys, ranked on validation, resumable after a kill.

Each trial is an ordinary run folder (``<out>/trials/trial-<hash of its values>``) trained by
:func:`kgdistill.api.ensure_run`, ranked by its best validation MRR; its ``eval.split`` is ``valid``, so the test
split is never evaluated while searching. The study lives in an Optuna journal (``<out>/journal.log``, appended
and flushed per event): a killed search run again with the same command picks up where it stopped, the
interrupted trial resumed from its last checkpoint with the same values. A trial whose training diverges is
recorded as failed (it counts in the budget) and the search goes on; with the median pruner, a trial whose
validation MRR falls below the median of the earlier trials at the same epoch stops there (``pruned``). Values
drawn again reuse their finished run. Then the best config is written (``best.yaml``) and, with
``final.seeds``, run once per seed on the base's own eval split (``<out>/final/seed-N``): the numbers a paper
reports. The report is ``tune.json``, ``tune.md`` and ``tune.png`` in ``<out>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kgdistill.api import ensure_run
from kgdistill.errors import ConfigError, KGDistillError, TrainingDiverged
from kgdistill.io import atomic_write_text
from kgdistill.runfolder import claim
from kgdistill.runs import machine_info
from kgdistill.tune.report import format_values, write_report
from kgdistill.tune.spec import Param, TuneSpec, load_spec, trial_config

__all__ = ["run_key", "run_search", "tune"]

log = logging.getLogger(__name__)

#: the study's name inside the journal
STUDY = "tune"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise KGDistillError(
            "kgdistill tune needs Optuna: pip install 'kgdistill[tune]' (or pip install optuna)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def run_key(params: Mapping[str, Any]) -> str:
    """The run folder name of a trial's values: the same values always train in (or reuse) the same folder."""
    text = json.dumps(dict(params), sort_keys=True)
    return "trial-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def _distribution(optuna: Any, p: Param) -> Any:
    d = optuna.distributions
    if p.choices is not None:
        return d.CategoricalDistribution(p.choices)
    if p.integer:
        return d.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))  # type: ignore[arg-type]
    return d.FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)  # type: ignore[arg-type]


def _sampler(optuna: Any, spec: TuneSpec, done: int) -> Any:
    """The spec's sampler, seeded with ``seed + done`` (``done``: trials already in the study): a continued
    search draws new values instead of repeating the first call's draws, and stays reproducible."""
    s = spec.sampler
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed + done)
    return optuna.samplers.TPESampler(seed=s.seed + done, n_startup_trials=s.startup_trials)


def _pruner(optuna: Any, spec: TuneSpec) -> Any:
    p = spec.pruner
    if p.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs
    )


def _identity(spec: TuneSpec, base: Mapping[str, Any]) -> str:
    """What a study is a search of (base config, set, space, sampler, pruner, and its start values when it has
    any: the identity of a search without them is as before they existed): the budget and final seeds may
    change."""
    keys = {"set", "space", "sampler", "pruner", *(("start",) if spec.start else ())}
    dump = spec.model_dump(include=keys)
    for p in dump["space"].values():  # likewise a parameter without a remainder
        if p["remainder"] is None:
            del p["remainder"]
    return json.dumps({"base": base, **dump}, sort_keys=True)


def _open_study(optuna: Any, spec: TuneSpec, base: Mapping[str, Any], out: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "journal.log")))
    try:
        done = len(optuna.load_study(study_name=STUDY, storage=storage).trials)
    except KeyError:  # a new search
        done = 0
    study = optuna.create_study(
        study_name=STUDY,
        storage=storage,
        direction="maximize",
        sampler=_sampler(optuna, spec, done),
        pruner=_pruner(optuna, spec),
        load_if_exists=True,
    )
    identity = _identity(spec, base)
    stored = study.user_attrs.get("identity")
    if stored is None:
        if not study.get_trials(deepcopy=False):
            # a new study: its first trials take the start values
            for values in spec.start:
                study.enqueue_trial(values)
        study.set_user_attr("identity", identity)
    elif stored != identity:
        raise ConfigError(
            f"{out} holds a search of another spec (base config, set, space or sampler differ); "
            "choose another --out or remove it"
        )
    states = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(states.RUNNING, states.WAITING)):
        if t.state == states.RUNNING:  # a trial of a process that was killed: run its values again
            study.tell(t.number, state=states.FAIL)
            if set(t.params) == set(spec.space):
                study.enqueue_trial(t.params)
                log.info(
                    "trial %d was interrupted: its values run again (its run resumes)", t.number
                )
    return study


def _counted(optuna: Any, study: Any) -> list[Any]:
    """The trials that count in the budget: completed, pruned, or failed because training diverged."""
    states = optuna.trial.TrialState
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (states.COMPLETE, states.PRUNED)
        or (t.state == states.FAIL and "diverged" in t.user_attrs)
    ]


def _with_root(raw: dict[str, Any], data_root: str | None) -> dict[str, Any]:
    if data_root:
        raw.setdefault("data", {})["root"] = data_root
    return raw


def _trial(
    optuna: Any,
    study: Any,
    spec: TuneSpec,
    base: Mapping[str, Any],
    out: Path,
    data_root: str | None,
    budget: int,
) -> None:
    dists = {name: _distribution(optuna, p) for name, p in spec.space.items()}
    trial = study.ask(fixed_distributions=dists)
    params = dict(trial.params)
    folder = out / "trials" / run_key(params)
    trial.set_user_attr("run", folder.name)
    done = len(_counted(optuna, study)) + 1
    log.info("trial %d (%d of %d): %s", trial.number, done, budget, format_values(params))

    def report(epoch: int, mrr: float) -> None:
        trial.report(mrr, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"valid MRR {mrr:.4f} at epoch {epoch}")

    t0 = time.perf_counter()
    try:
        metrics = ensure_run(
            _with_root(trial_config(base, spec, params), data_root), folder, on_valid=report
        )
    except optuna.TrialPruned as e:
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        log.info("trial %d pruned: %s, below the median of the earlier trials", trial.number, e)
        return
    except TrainingDiverged as e:
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
        trial.set_user_attr("diverged", str(e))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d diverged: %s", trial.number, e)
        return
    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
    for key in ("train_seconds", "epochs", "best_epoch", "num_parameters"):
        trial.set_user_attr(key, metrics.get(key))
    value = float(metrics["best_valid_mrr"])
    study.tell(trial, value)
    best = study.best_trial
    log.info(
        "trial %d: valid MRR %.4f; best %.4f (trial %d)",
        trial.number,
        value,
        best.value,
        best.number,
    )


def _final(
    spec: TuneSpec,
    base: Mapping[str, Any],
    params: Mapping[str, Any],
    out: Path,
    data_root: str | None,
) -> list[dict[str, Any]]:
    rows = []
    for seed in spec.final.seeds:
        raw = trial_config(base, spec, params, seed=seed, search=False)
        log.info("final run, seed %d", seed)
        metrics = ensure_run(_with_root(raw, data_root), out / "final" / f"seed-{seed}")
        rows.append(
            {
                "seed": seed,
                "run": f"final/seed-{seed}",
                "split": metrics["protocol"].get("split"),
                "best_valid_mrr": metrics.get("best_valid_mrr"),
                "metrics": metrics["sides"]["both"],
                "protocol": metrics["protocol"],
                "train_seconds": metrics.get("train_seconds"),
                "epochs": metrics.get("epochs"),
                "best_epoch": metrics.get("best_epoch"),
                "num_parameters": metrics.get("num_parameters"),
            }
        )
    return rows


def _trial_rows(optuna: Any, study: Any) -> list[dict[str, Any]]:
    states = optuna.trial.TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == states.FAIL and "diverged" not in t.user_attrs:
            continue  # interrupted; its values ran again as a later trial
        if t.state not in (states.COMPLETE, states.FAIL, states.PRUNED):
            continue
        steps = t.intermediate_values
        rows.append(
            {
                "number": t.number,
                "state": {states.COMPLETE: "complete", states.PRUNED: "pruned"}.get(
                    t.state, "diverged"
                ),
                "params": dict(t.params),
                "valid_mrr": t.value if t.state == states.COMPLETE else None,
                "best_valid_so_far": max(steps.values()) if steps else None,
                "last_epoch": max(steps) if steps else None,
                "run": t.user_attrs.get("run"),
                **{
                    k: t.user_attrs.get(k)
                    for k in ("seconds", "train_seconds", "epochs", "best_epoch", "num_parameters")
                },
            }
        )
    return rows


def _importances(optuna: Any, study: Any, spec: TuneSpec) -> dict[str, float]:
    """fANOVA importance of each parameter for the validation MRR (empty with fewer than 5 completed trials)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 5 or len(spec.space) < 2:
        return {}
    try:
        return {
            k: float(v)
            for k, v in optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            ).items()
        }
    except (RuntimeError, ValueError) as e:  # e.g. a parameter that never varied
        log.warning("no parameter importances: %s", e)
        return {}


def tune(
    spec_path: str | Path,
    out: str | Path,
    *,
    trials: int | None = None,
    final: bool = True,
    data_root: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or continue) the search of ``spec_path`` in ``out``; returns the report (as in ``tune.json``).

    Args:
        trials: the budget of finished trials (default: the spec's ``trials``); a larger one extends a search.
        final: run the best config once per ``final.seeds`` on the base's eval split.
        data_root: where the datasets are (default: the base config's ``data.root`` or ``$KGDISTILL_DATA``).
        command: the command line to record in the report.

    Raises:
        ConfigError: the spec is wrong, or ``out`` holds a search of another spec.
    """
    spec, base = load_spec(spec_path)
    return run_search(
        spec,
        base,
        out,
        name=Path(spec_path).name,
        trials=trials,
        final=final,
        data_root=data_root,
        command=command,
    )


def run_search(
    spec: TuneSpec,
    base: Mapping[str, Any],
    out: str | Path,
    *,
    name: str,
    trials: int | None = None,
    final: bool = True,
    data_root: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or continue) the search of a checked ``spec`` over the raw run config ``base`` in ``out`` (a spec
    built by a program, e.g. a benchmark's grid of searches: check it with
    :func:`kgdistill.tune.spec.check_space` first); returns the report. ``name`` labels the report. The other
    arguments are :func:`tune`'s."""
    optuna = _optuna()
    out = Path(out)
    budget = trials if trials is not None else spec.trials
    if budget < 1:
        raise ConfigError(f"--trials must be at least 1, got {budget}")
    started = time.perf_counter()
    with claim(out, fresh=False):
        study = _open_study(optuna, spec, base, out)
        while len(_counted(optuna, study)) < budget:
            _trial(optuna, study, spec, base, out, data_root, budget)
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            raise KGDistillError(
                f"every trial of {name} diverged: lower the learning rates of the space"
            )
        best = study.best_trial
        best_raw = trial_config(base, spec, best.params, search=False)
        atomic_write_text(out / "best.yaml", yaml.safe_dump(best_raw, sort_keys=False))
        finals = _final(spec, base, best.params, out, data_root) if final else []
        doc = {
            "command": command,
            "machine": machine_info(),
            "spec": name,
            "base": spec.base or base.get("name"),
            "space": {k: v.model_dump(exclude_defaults=True) for k, v in spec.space.items()},
            "set": spec.set,
            "sampler": spec.sampler.model_dump(),
            "pruner": spec.pruner.model_dump(),
            "start": spec.start,
            "budget": budget,
            "trials": _trial_rows(optuna, study),
            "best": {"number": best.number, "params": dict(best.params), "valid_mrr": best.value},
            "best_config": best_raw,
            "importances": _importances(optuna, study, spec),
            "final": finals,
            "seconds_this_call": round(time.perf_counter() - started, 1),
        }
        write_report(out, doc)
    return doc
