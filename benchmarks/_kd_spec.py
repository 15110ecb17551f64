"""The KD benchmark's spec, and the run configs it makes: ``extends`` chains, per-dataset merging, each
(student, method, seed) cell's config and search, each teacher's config (used by ``temporal_kd.py``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from _common import REPO, run_command
from kgdistill.config import _format, apply_overrides
from kgdistill.errors import ConfigError

if TYPE_CHECKING:
    from kgdistill.tune import TuneSpec

#: the default spec
SPEC = REPO / "benchmarks" / "specs" / "temporal-kd.yaml"


def _spec(path: str | Path | None, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The benchmark spec at ``path``. A spec with ``extends: OTHER.yaml`` (a path relative to its own folder) is
    that spec with its own keys merged in: a mapping merges key by key at every depth, anything else (a list, a
    number) replaces the base's value; ``extends`` chains."""
    file = Path(path or SPEC)
    if file.resolve() in _seen:
        raise ConfigError(f"spec {file}: 'extends' loops back to it")
    try:
        own = yaml.safe_load(file.read_text())
    except OSError as e:
        raise ConfigError(f"spec {file}: cannot read it ({e.strerror})") from e
    if not isinstance(own, dict):
        raise ConfigError(f"spec {file}: expected a mapping of keys, found {type(own).__name__}")
    base = own.pop("extends", None)
    if base is None:
        return own
    if not isinstance(base, str):
        raise ConfigError(
            f"spec {file}: key 'extends' must be the path of another spec, not {base!r}"
        )
    parent = file.parent / base
    if not parent.is_file():
        raise ConfigError(f"spec {file}: key 'extends' names {parent}, which is not a file")
    return _deep_merged(_spec(parent, (*_seen, file.resolve())), own)


def _deep_merged(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``own`` merged in: mappings key by key (recursively), other values replaced."""
    out = copy.deepcopy(base)
    for k, v in own.items():
        out[k] = (
            _deep_merged(out[k], v)
            if isinstance(v, dict) and isinstance(out.get(k), dict)
            else copy.deepcopy(v)
        )
    return out


def _stem(sp: dict[str, Any]) -> str:
    """The result files' stem: the spec's ``benchmark`` name (default ``temporal-kd``) as ``temporal_kd``."""
    return str(sp.get("benchmark", "temporal-kd")).replace("-", "_")


def _parts(spec: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """The method's stages as ``{share, objective}``: a list of terms is one stage, as is a mapping with
    ``objective``; a mapping with ``stages`` splits the student's epochs by ``share``."""
    m = spec["methods"][method]
    if isinstance(m, dict) and "stages" in m:
        return list(m["stages"])
    return [{"share": 1.0, "objective": m["objective"] if isinstance(m, dict) else m}]


def _stages(
    spec: dict[str, Any], method: str, epochs: int, student: str | None = None
) -> list[dict[str, Any]]:
    """The method's stages, each opened by the supervised terms (the student's own ``supervised`` list, else
    the spec's); a stage's other keys (e.g. ``early_stopping``) are the run config's stage keys."""
    sup = spec["supervised"]
    if student is not None:
        sup = spec["students"][student].get("supervised", sup)
    return [
        {
            **{k: copy.deepcopy(v) for k, v in part.items() if k not in ("share", "objective")},
            "epochs": _share_epochs(part.get("share", 1.0), epochs),
            "objective": copy.deepcopy(sup) + copy.deepcopy(part["objective"]),
        }
        for part in _parts(spec, method)
    ]


def _share_epochs(share: float, epochs: int) -> int:
    return max(1, round(share * epochs))


def _space(
    spec: dict[str, Any], student: str, method: str, cfg: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The searched keys of a (student, method) cell, as ``kgdistill tune`` parameters over the run config
    ``cfg``: the student's ``space`` (e.g. its learning rate, in every method) and the method's. Besides a
    config ``path``, a parameter may name an objective ``term`` (its ``loss``) and a ``key`` of it: the same
    value in every stage that has the term; or a stage's ``share`` (choices: shares of the student's epochs; the
    last stage then runs the rest, so that every choice trains the student's epochs in all)."""
    st, m = spec["students"][student], spec["methods"][method]
    raw = {**st.get("space", {}), **(m.get("space", {}) if isinstance(m, dict) else {})}
    epochs = st["epochs"]
    out: dict[str, dict[str, Any]] = {}
    for name, p in raw.items():
        if p is None:  # removed by a ``per_student`` entry (see _for_student)
            continue
        p = dict(p)
        if "term" in p:
            term, key = p.pop("term"), p.pop("key")
            paths = [
                f"stages.{i}.objective.{j}.{key}"
                for i, stage in enumerate(cfg["stages"])
                for j, t in enumerate(stage["objective"])
                if t["loss"] == term
            ]
            if not paths:
                raise ConfigError(f"space.{name}: no '{term}' term in {method} for {student}")
            p["path"] = paths
        elif "share" in p:
            i, last = p.pop("share"), len(cfg["stages"]) - 1
            p["path"] = f"stages.{i}.epochs"
            p["choices"] = [_share_epochs(c, epochs) for c in p["choices"]]
            # the last stage runs the rest: every choice trains the student's epochs in all
            if i != last:
                others = sum(s["epochs"] for j, s in enumerate(cfg["stages"]) if j not in (i, last))
                p["remainder"] = {"path": f"stages.{last}.epochs", "total": epochs - others}
        out[name] = p
    return out


def _start(spec: dict[str, Any], student: str, method: str) -> list[dict[str, Any]]:
    """The method's search ``start`` values for ``student`` (the first trials, e.g. the values a baseline's search
    chose), a stage ``share`` turned into the student's epochs as the space has it. ``start`` is a list of
    name -> value mappings for every student, or a mapping student -> such a list (the values a baseline chose
    differ by student, and so do the names: a student's own ``space``); a student it does not name starts at the
    sampler's values.

    Raises:
        ConfigError: ``start`` of another form, or naming a student the spec does not have.
    """
    m = spec["methods"][method]
    if not isinstance(m, dict) or "start" not in m:
        return []
    start, key = m["start"], f"methods.{method}.start"
    if isinstance(start, dict):
        unknown = sorted(set(start) - set(spec["students"]), key=str)
        if unknown:
            raise ConfigError(
                f"spec key '{key}': unknown student(s) {unknown}; the spec has {list(spec['students'])}"
            )
        start, key = start.get(student, []), f"{key}.{student}"
    if not isinstance(start, list) or not all(isinstance(v, dict) for v in start):
        raise ConfigError(
            f"spec key '{key}': a list of name -> value mappings, or a mapping student -> such a list"
        )
    raw = {**spec["students"][student].get("space", {}), **m.get("space", {})}
    epochs = spec["students"][student]["epochs"]
    return [
        {
            k: _share_epochs(v, epochs)
            if "share" in (raw.get(k) or {}) and isinstance(v, float)
            else v
            for k, v in values.items()
        }
        for values in start
    ]


def _tune_spec(
    sp: dict[str, Any], cfg: dict[str, Any], student: str, method: str
) -> TuneSpec | None:
    """The search of a (student, method) cell over its run config ``cfg`` (a copy), or ``None`` when the spec
    has no ``search`` section or the cell nothing to search. A method's ``search`` mapping (e.g. ``trials``)
    overrides the spec's for its cells."""
    from kgdistill.tune import TuneSpec

    space = _space(sp, student, method, cfg)
    if "search" not in sp or not space:
        return None
    start = _start(sp, student, method)
    try:
        return TuneSpec.model_validate(
            {
                "config": copy.deepcopy(cfg),
                "space": space,
                **sp["search"],
                # a method's own budget (e.g. one cell's, through per_student): not part of the search's identity
                **(m.get("search", {}) if isinstance(m := sp["methods"][method], dict) else {}),
                **({"start": start} if start else {}),
            }
        )
    except ValidationError as e:
        raise ConfigError(
            f"the search of {student}, {method}: {_format(e).replace('config key', 'key')}"
        ) from None


def _searched(
    sp: dict[str, Any],
    cfg: dict[str, Any],
    student: str,
    method: str,
    folder: Path,
    data_root: str | None,
    train: bool,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The config ``kgdistill tune`` chose on validation for a cell (with the search's report), searching in
    ``folder`` first (resumed where it stopped); ``(None, None)`` when the cell has nothing to search, and
    ``(None, report)`` when ``train`` is off and the search has not finished."""
    from kgdistill.tune import check_space, run_search

    tspec = _tune_spec(sp, cfg, student, method)
    if tspec is None:
        return None, None
    base = tspec.config or {}
    if not train:
        report = folder / "tune.json"
        if not (folder / "best.yaml").is_file() or not report.is_file():
            return None, None
        return yaml.safe_load((folder / "best.yaml").read_text()), json.loads(report.read_text())
    check_space(f"{student}-{method}", base, tspec)
    doc = run_search(
        tspec,
        base,
        folder,
        name=f"{cfg['name']} ({student}, {method})",
        final=False,
        data_root=data_root,
        command=run_command(),
    )
    return doc["best_config"], doc


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def _search_row(dataset: str, student: str, method: str, doc: dict[str, Any]) -> dict[str, Any]:
    """What the tables and the JSON show of a cell's search: its budget, outcome, chosen values and every trial's
    values: its validation MRR (x100; ``None`` for a pruned or diverged trial), the best it reached before it stopped,
    and its last epoch."""
    states = [t["state"] for t in doc["trials"]]
    return {
        "dataset": dataset,
        "student": student,
        "method": method,
        "budget": doc["budget"],
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "diverged": states.count("diverged"),
        "best_valid_mrr": 100 * doc["best"]["valid_mrr"],
        "params": doc["best"]["params"],
        "seconds": sum(t.get("seconds") or 0 for t in doc["trials"]),
        "start": doc.get("start") or [],
        "best_trial": doc["best"]["number"],
        # every trial, so a reader sees how flat or sharp the validation surface was around the choice
        "trials": [
            {
                "number": t["number"],
                "state": t["state"],
                "params": t["params"],
                "valid_mrr": _pct(t.get("valid_mrr")),
                "best_valid_so_far": _pct(t.get("best_valid_so_far")),
                "last_epoch": t.get("last_epoch"),
            }
            for t in doc["trials"]
        ],
    }


def _configs(
    spec: dict[str, Any],
    dataset: str,
    data_root: str | None,
    teacher_dirs: dict[str, Path],
    student: str,
    method: str,
    seed: int,
    epochs: int | None,
) -> dict[str, Any]:
    st = spec["students"][student]
    stages = _stages(spec, method, epochs if epochs is not None else st["epochs"], student)
    cfg = {
        "name": f"{method}-{student}_from_{spec['teacher']['model']['name']}-{dataset}",
        "seed": seed,
        "data": {"name": dataset, "root": data_root, **spec.get("data", {})},
        "model": st["model"],
        "stages": stages,
        "train": {**st["train"], "progress": False},
        "eval": spec.get("eval", {}),
    }
    used = {t["teacher"] for stage in stages for t in stage["objective"] if "teacher" in t}
    if used:
        cfg["teachers"] = {name: _teacher_entry(spec, teacher_dirs[name]) for name in sorted(used)}
    return cfg


def _teacher_entry(spec: dict[str, Any], run: Path) -> dict[str, Any]:
    """A student's ``teachers`` entry for the teacher run ``run``; with the spec's ``teacher_score_cache: true``
    its score rows over the training queries are written once into the run folder and every student reads
    them there (the teacher's forward pass over all entities is most of a KD step on a CPU)."""
    entry: dict[str, Any] = {"name": "checkpoint", "path": str(run)}
    flag = spec.get("teacher_score_cache", False)
    if not isinstance(flag, bool):
        raise ConfigError(f"spec key 'teacher_score_cache': true or false, got {flag!r}")
    if flag:
        entry["score_cache"] = str(run / "train-scores.safetensors")
    return entry


def _for_dataset(sp: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The spec as one dataset sees it: each student and method section with the dataset's
    ``per_dataset.<ds>.students`` / ``.methods`` entry merged in (a mapping such as ``train`` merges key by key,
    anything else is replaced; e.g. the ``supervised`` terms and the learning rate a search chose for that
    dataset, or a method's search ``start``)."""
    own = sp.get("per_dataset", {}).get(dataset, {})
    return {
        **sp,
        "students": _merged(
            sp["students"], own.get("students", {}), f"per_dataset.{dataset}.students"
        ),
        "methods": _merged(sp["methods"], own.get("methods", {}), f"per_dataset.{dataset}.methods"),
    }


def _for_student(dsp: dict[str, Any], student: str) -> dict[str, Any]:
    """A dataset's view of the spec (:func:`_for_dataset`) as one student's cells see it: each method section's
    ``per_student.<student>`` entry merged in (as :func:`_merged` does: a mapping such as ``space`` key by key,
    anything else, e.g. ``stages``, replaced), ``per_student`` itself dropped. A ``space`` entry ``null`` removes
    that parameter (one the merged ``stages`` no longer has a term for, or the student's own, e.g. ``lr`` given
    one value as ``choices``), so one cell of a dataset can differ without changing its other cells' configs.

    Raises:
        ConfigError: a ``per_student`` that is not a mapping of the spec's students to mappings.
    """
    methods = {}
    for name, section in dsp["methods"].items():
        if not isinstance(section, dict) or "per_student" not in section:
            methods[name] = section
            continue
        own, key = section["per_student"], f"methods.{name}.per_student"
        if not isinstance(own, dict) or not all(isinstance(v, dict) for v in own.values()):
            raise ConfigError(f"spec key '{key}': a mapping student -> keys of the method section")
        unknown = sorted(set(own) - set(dsp["students"]), key=str)
        if unknown:
            raise ConfigError(
                f"spec key '{key}': unknown student(s) {unknown}; the spec has {list(dsp['students'])}"
            )
        base = {k: v for k, v in section.items() if k != "per_student"}
        methods[name] = _merged({name: base}, {name: own.get(student, {})}, key)[name]
    return {**dsp, "methods": methods}


def _merged(sections: dict[str, Any], own: dict[str, Any], key: str) -> dict[str, Any]:
    """``sections`` (name -> section) with a dataset's entries ``own`` merged in (see :func:`_for_dataset`)."""
    unknown = sorted(set(own) - set(sections))
    if unknown:
        raise ConfigError(
            f"spec key '{key}': unknown name(s) {unknown}; the spec has {list(sections)}"
        )
    out = {}
    for name, section in sections.items():
        merged = copy.deepcopy(section)
        for k, value in own.get(name, {}).items():
            if not isinstance(merged, dict):
                raise ConfigError(f"spec key '{key}.{name}': {name} has no section to merge into")
            if isinstance(value, dict) and isinstance(merged.get(k), dict):
                merged[k] = {**merged[k], **copy.deepcopy(value)}
            else:
                merged[k] = copy.deepcopy(value)
        out[name] = merged
    return out


def _teacher_config(
    sp: dict[str, Any], section: str, dataset: str, data_root: str | None, epochs: int | None
) -> dict[str, Any]:
    """The run config of a per-dataset teacher section (``teacher`` or ``llm_teacher``) of the spec."""
    t = sp[section]
    cfg = {
        "name": f"{t['model']['name']}-{dataset}",
        "seed": 0,
        "data": {"name": dataset, "root": data_root, **sp.get("data", {})},
        **copy.deepcopy({k: t[k] for k in ("model", "stages", "train")}),
        "eval": sp.get("eval", {}),
    }
    cfg["train"]["progress"] = False
    if epochs is not None:
        cfg["stages"][0]["epochs"] = epochs
    # per-dataset settings of the section (e.g. WN18RR's N3 weight), as dotted keys
    over = sp.get("per_dataset", {}).get(dataset, {}).get(section, {})
    return apply_overrides(cfg, [f"{k}={json.dumps(v)}" for k, v in over.items()])
