"""The search spec of ``kgdistill tune``: a base run config, what every trial changes, and the space searched.

```yaml
base: ../configs/teacher/tntcomplex-yago11k.yaml   # a run config (relative to this file), or `config:` inline
set:                                               # every trial and the final runs
  stages.0.epochs: 60
  train.eval_every: 2
space:                                             # name -> a config key and its range
  dim: {path: model.dim, choices: [128, 256, 512]}
  n3: {path: stages.0.objective.1.weight, low: 0.005, high: 0.5, log: true}
  batch: {path: train.batch_size, low: 250, high: 2000, step: 250}       # integer bounds: an integer
  T: {path: [stages.0.objective.1.temperature, stages.1.objective.1.temperature], low: 0.5, high: 4}
trials: 24                                         # completed trials the search runs to
start:                                             # values of the first trials (then the sampler's)
  - {dim: 256, n3: 0.05, batch: 1000, T: 1.0}
sampler: {name: tpe, seed: 0, startup_trials: 8}
pruner: {name: median, startup_trials: 4, warmup_epochs: 6}   # stop trials below the median early
final: {seeds: [0, 1, 2]}                          # the best config on the base's eval split, once per seed
```

Trials are ranked by the run's best validation MRR; their ``eval.split`` is forced to ``valid``, so the test split
is never evaluated during the search. The final runs use the base's own ``eval`` section. ``start`` warm-starts a
search (Optuna's ``enqueue_trial``): e.g. a method that extends a baseline begins at the baseline's chosen values;
its trials count in the budget like the sampler's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kgdistill.config import _format, apply_overrides, parse_config, read_yaml_mapping
from kgdistill.errors import ConfigError
from kgdistill.run import check

__all__ = ["Param", "TuneSpec", "check_space", "load_spec", "trial_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Remainder(_Strict):
    """A second config key that takes ``total - value``: a fixed budget split between two keys."""

    path: str = Field(description="the config key that takes the rest (stages.1.epochs)")
    total: int | float = Field(description="the budget: the two keys always sum to it")


class Param(_Strict):
    """One searched config key: ``choices`` (categorical) or ``low`` / ``high`` (with ``log`` or ``step``)."""

    path: str | list[str] = Field(
        description="the config key, dotted, list items by index (stages.0.epochs); or a list of keys that "
        "all take the value (one temperature for the same term in two stages)"
    )
    choices: list[Any] | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    remainder: Remainder | None = Field(
        None,
        description="a key that takes total - value (a two-stage run's first stage length searched, the "
        "second stage running the rest of a fixed number of epochs)",
    )

    @model_validator(mode="after")
    def _range(self) -> Param:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("give either choices or low / high (log, step), not both")
            if not self.choices:
                raise ValueError("choices is empty")
            self._check_remainder()
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices, or both low and high")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step do not combine")
        self._check_remainder()
        return self

    def _check_remainder(self) -> None:
        if self.remainder is None:
            return
        values = self.choices if self.choices is not None else [self.low, self.high]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError("a remainder needs numeric values")
        if max(values) > self.remainder.total:
            raise ValueError(
                f"remainder.total ({self.remainder.total}) is below the largest value ({max(values)}): "
                "the rest would be negative"
            )
        if self.remainder.path in self.paths:
            raise ValueError(
                f"remainder.path {self.remainder.path} is also the parameter's own key"
            )

    @property
    def paths(self) -> list[str]:
        """The config keys the value is written to."""
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def all_paths(self) -> list[str]:
        """Every config key the parameter writes: its paths, then the remainder's."""
        return self.paths + ([self.remainder.path] if self.remainder else [])

    def assign(self, value: Any) -> dict[str, Any]:
        """Config key -> value for the parameter at ``value`` (the remainder's key at ``total - value``)."""
        out = dict.fromkeys(self.paths, value)
        if self.remainder is not None:
            out[self.remainder.path] = self.remainder.total - value
        return out

    @property
    def integer(self) -> bool:
        """Whether the range is of integers (both bounds, and the step if any, are integers)."""
        bounds = (self.low, self.high, *(() if self.step is None else (self.step,)))
        return all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is one the parameter can take (a choice, or inside the range on its step)."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if not self.low <= value <= self.high:  # type: ignore[operator]
            return False
        if self.step is not None:
            k = (value - self.low) / self.step  # type: ignore[operator]
            return abs(k - round(k)) < 1e-9
        return True

    def extremes(self) -> tuple[Any, Any]:
        """The range's two ends (first and last choice): every trial value lies between them."""
        if self.choices is not None:
            return self.choices[0], self.choices[-1]
        return self.low, self.high


class Sampler(_Strict):
    """Optuna's sampler: ``tpe`` (after ``startup_trials`` random ones) or ``random``; seeded."""

    name: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    startup_trials: int = Field(8, ge=1)


class Pruner(_Strict):
    """Optuna's median pruner: a trial stops at a validation whose MRR is below the median of the earlier
    trials' at the same epoch (``none``: every trial runs to its end or its early stop)."""

    name: Literal["median", "none"] = "median"
    startup_trials: int = Field(4, ge=0, description="trials that are never pruned")
    warmup_epochs: int = Field(0, ge=0, description="epochs of a trial before it can be pruned")


class Final(_Strict):
    """The best config's runs on the base's own eval split, one per seed (none: the search only)."""

    seeds: list[int] = Field(default_factory=list)


class TuneSpec(_Strict):
    """A validated search spec (see the module docstring)."""

    base: str | None = Field(None, description="a run config file, relative to the spec")
    config: dict[str, Any] | None = Field(None, description="the base run config, inline")
    set: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Param]
    trials: int = Field(20, ge=1)
    sampler: Sampler = Sampler()
    pruner: Pruner = Pruner()
    final: Final = Final()
    start: list[dict[str, Any]] = Field(
        default_factory=list,
        description="the values of the first trials, every searched name given (then the sampler's)",
    )

    @model_validator(mode="after")
    def _one_base(self) -> TuneSpec:
        if (self.base is None) == (self.config is None):
            raise ValueError("give the base run config as either base (a file) or config (inline)")
        if not self.space:
            raise ValueError("space is empty: nothing to search")
        for i, values in enumerate(self.start):
            missing = sorted(set(self.space) - set(values))
            unknown = sorted(set(values) - set(self.space))
            if missing or unknown:
                raise ValueError(
                    f"start.{i}: give every searched name once"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; not searched {unknown}" if unknown else "")
                )
            for name, value in values.items():
                if not self.space[name].holds(value):
                    raise ValueError(f"start.{i}.{name}: {value!r} is outside space.{name}")
        return self


def _overrides(values: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides for :func:`apply_overrides` (JSON values are YAML)."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def trial_config(
    base: Mapping[str, Any],
    spec: TuneSpec,
    params: Mapping[str, Any],
    *,
    seed: int | None = None,
    search: bool = True,
) -> dict[str, Any]:
    """The raw run config of a trial: ``base`` with the spec's ``set`` and the trial's ``params`` applied.

    Args:
        params: searched name -> value. seed: the run's seed (default: the base's).
        search: a search trial (its ``eval.split`` forced to ``valid``); ``False``: a final run, with the base's
            ``eval`` section.
    """
    raw = copy.deepcopy(dict(base))
    raw = apply_overrides(raw, _overrides(spec.set))
    values = {p: x for k, v in params.items() for p, x in spec.space[k].assign(v).items()}
    raw = apply_overrides(raw, _overrides(values))
    if seed is not None:
        raw["seed"] = seed
    if search:
        raw.setdefault("eval", {})["split"] = "valid"
    return raw


def load_spec(path: str | Path) -> tuple[TuneSpec, dict[str, Any]]:
    """Read and check a search spec; returns it with the base run config (raw mapping).

    Each parameter's config is checked at both ends of its range, so a wrong key or a value the run config
    refuses stops the search before any training, naming the parameter.

    Raises:
        ConfigError: the file, a spec key or the base config is wrong (the message names it).
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "tune spec")
    try:
        spec = TuneSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_format(e).replace('config key', 'key')}") from None
    if spec.base is not None:
        base_path = (path.parent / spec.base).resolve()
        if not base_path.is_file():
            raise ConfigError(f"{path}: base config not found: {spec.base}")
        base = read_yaml_mapping(base_path, "base config")
        base.setdefault("name", base_path.stem)
    else:
        base = dict(spec.config or {})
    check_space(str(path), base, spec)
    return spec, base


def check_space(label: str, base: Mapping[str, Any], spec: TuneSpec) -> None:
    """Validate the config at each end of every parameter (the others at their first value), and that no key
    is both searched and ``set``; errors start with ``label`` (the spec's file, or what a program built it for).

    Raises:
        ConfigError: naming the parameter, its keys and the value refused.
    """
    searched = [p for param in spec.space.values() for p in param.all_paths]
    twice = sorted({p for p in searched if searched.count(p) > 1})
    if twice:
        raise ConfigError(f"{label}: {', '.join(twice)} is searched by more than one parameter")
    both = sorted(set(searched) & set(spec.set))
    if both:
        raise ConfigError(f"{label}: {', '.join(both)} is both in set and searched in space")
    firsts = {n: p.extremes()[0] for n, p in spec.space.items()}
    for name, param in spec.space.items():
        for value in param.extremes():
            try:
                cfg = parse_config(trial_config(base, spec, {**firsts, name: value}))
                check(cfg, teacher_fields=dict.fromkeys(cfg.teachers))
            except ConfigError as e:
                keys = ", ".join(param.all_paths)
                raise ConfigError(f"{label}: space.{name} ({keys} = {value!r}): {e}") from None
