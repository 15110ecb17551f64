"""Run configuration: typed, validated sections whose keys equal the constructor kwargs they feed.

A YAML file is read with ``safe_load``, ``--set a.b=v`` overrides are applied to the raw mapping, and the result
is validated by pydantic. Any mistake becomes one :class:`~kgdistill.errors.ConfigError` that names the key
(``config key 'train.lr': ...``). Every run writes the fully resolved config next to its results.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kgdistill.errors import ConfigError

__all__ = [
    "DataConfig",
    "EvalConfig",
    "ModelSpec",
    "MultiConfig",
    "ParamGroup",
    "RunConfig",
    "SchedulerConfig",
    "StageConfig",
    "TermSpec",
    "TimeConfig",
    "TimeFilter",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
    "read_yaml_mapping",
    "validate_section",
]


#: Which time-aware filter ranks temporal queries (``eval.time_filter``, see :mod:`kgdistill.data.filters`).
TimeFilter = Literal["validity", "timestamp"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeConfig(_Strict):
    """Interval protocol (see :mod:`kgdistill.data.time`); ignored for static and point-time data."""

    granularity: Literal["year", "bins"] = Field(
        "bins", description="one time id per year, or HyTE bins"
    )
    min_bin_size: int = Field(300, ge=1, description="least train dates per bin (granularity=bins)")
    interval_mode: Literal["start", "expand", "split"] = Field(
        "start", description="how an interval is modelled"
    )


class MultiConfig(_Strict):
    """A view of a linked multi-KG collection (``data.name`` is then a collection: ``dbp15k_zh_en`` or a folder).

    See :mod:`kgdistill.multi`. Every graph is split by the same deterministic rule and seed, so a teacher
    pre-trained on the union never sees a target's valid or test triple.
    """

    view: str = Field(
        "union",
        description="'union' (all graphs: joint pre-training) or one graph's name (a target)",
    )
    tie: Literal["shared", "separate"] = Field(
        "shared",
        description="union: aligned entities share one embedding, or stay apart (alignment loss)",
    )
    hops: int | None = Field(
        None,
        ge=0,
        description="target: add the linked subgraph (source triples within this many hops of aligned "
        "entities; 0 = between aligned entities); None = the target alone",
    )
    valid: float = Field(
        0.05, ge=0, lt=0.5, description="fraction of each graph's triples for valid"
    )
    test: float = Field(0.05, ge=0, lt=0.5, description="fraction of each graph's triples for test")
    split_seed: int = Field(0, description="seed of the split")


class ResplitConfig(_Strict):
    """A non-standard protocol (see :mod:`kgdistill.data.resplit`): every split pooled, intervals expanded into
    yearly facts, then a seeded random split. Off by default: the dataset's own split is the standard one."""

    expand: Literal["year", "none"] = Field(
        "year", description="one fact per year of a known interval"
    )
    valid: float = Field(0.1, gt=0, lt=0.5, description="fraction of the facts dealt to valid")
    test: float = Field(0.1, gt=0, lt=0.5, description="fraction of the facts dealt to test")
    seed: int = Field(0, description="seed of the random split")


class DataConfig(_Strict):
    name: str = Field("yago11k", description="registered dataset name or a folder path")
    root: str | None = Field(
        None, description="data root (default: $KGDISTILL_DATA; YAGO11k is bundled)"
    )
    unseen: Literal["keep", "drop"] = Field(
        "keep", description="valid/test facts with entities unseen in train"
    )
    time: TimeConfig = TimeConfig()
    resplit: ResplitConfig | None = Field(
        None, description="pool the splits, expand intervals into yearly facts, split at random"
    )
    multi: MultiConfig | None = Field(
        None, description="read 'name' as a linked multi-KG collection and build this view of it"
    )

    @model_validator(mode="after")
    def _one_split_rule(self) -> DataConfig:
        if self.resplit is not None and self.multi is not None:
            raise ValueError("resplit and multi do not combine (a multi-KG view has its own split)")
        return self

    def protocol(self) -> dict[str, Any]:
        """Keyword arguments of :func:`kgdistill.data.load_kg` (the time protocol, and ``resplit`` when set)."""
        extra = {} if self.resplit is None else {"resplit": self.resplit.model_dump()}
        return {"unseen": self.unseen, **self.time.model_dump(), **extra}


class ModelSpec(BaseModel):
    """``name`` of a registered model plus its keyword arguments (checked against the builder)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(description="registered model (kgdistill models)")

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TermSpec(BaseModel):
    """One objective term: ``loss`` name, ``weight``, optional ``teacher``, plus the loss's kwargs."""

    model_config = ConfigDict(extra="allow", frozen=True)
    loss: str
    weight: float = 1.0
    teacher: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"loss": self.loss, "weight": self.weight, **(self.model_extra or {})}
        if self.teacher is not None:
            d["teacher"] = self.teacher
        return d


class ParamGroup(_Strict):
    """Optimiser settings for the parameters whose names match ``match`` (``fnmatch`` patterns, e.g.
    ``entities.encoder.*``): typically a pre-trained encoder at a lower learning rate than a fresh head."""

    match: list[str] = Field(min_length=1, description="parameter-name patterns (fnmatch)")
    lr: float | None = Field(None, gt=0, description="learning rate (default: the stage's)")
    weight_decay: float | None = Field(None, ge=0, description="weight decay (default: train's)")


class SchedulerConfig(_Strict):
    """Learning-rate schedule of each stage, stepped once per optimiser step: linear warm-up from 0, then
    ``constant``, ``linear`` decay to 0 or ``cosine`` decay to 0 at the stage's last step."""

    name: Literal["constant", "linear", "cosine"] = "constant"
    warmup: float = Field(
        0.0, ge=0, description="warm-up steps (>= 1) or a fraction of the stage's steps (< 1)"
    )


class StageConfig(_Strict):
    """One training stage: its epochs, its objective, optional optimiser overrides."""

    name: str | None = None
    epochs: int = Field(50, ge=0)
    objective: list[TermSpec] = Field(default_factory=lambda: [TermSpec(loss="supervised_ce")])
    optimizer: Literal["adam", "adagrad", "sgd", "adamw"] | None = None
    lr: float | None = Field(None, gt=0)
    scheduler: SchedulerConfig | None = Field(
        None, description="this stage's schedule (default: train's)"
    )
    early_stopping: bool = Field(
        True,
        description="false: this stage runs all its epochs whatever train.patience says (e.g. the first stage "
        "of a two-stage distillation, so that stopping it early does not shorten the whole run); its "
        "validations still choose the best checkpoint",
    )


class TrainConfig(_Strict):
    batch_size: int = Field(1000, ge=1, description="queries per step")
    optimizer: Literal["adam", "adagrad", "sgd", "adamw"] = "adagrad"
    lr: float = Field(0.1, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    fused_optimizer: bool = Field(
        True,
        description="PyTorch's fused optimiser kernel where one exists for the parameters' device (Adam, "
        "AdamW, Adagrad and SGD on CPU; Adam, AdamW and SGD on CUDA): one pass over each parameter instead of "
        "several (Adagrad on a 40,943 x 200 table: 26 -> 7 ms a step on one core). Equal to the unfused path "
        "up to float rounding; false: the unfused path of earlier versions, bit for bit",
    )
    negatives: int = Field(
        0, ge=0, description="0: score all entities (1-N); k > 0: k sampled tails"
    )
    negative_sampling: Literal["uniform", "shared", "in_batch", "hard"] = Field(
        "uniform",
        description="sampled tails drawn uniformly per query; drawn uniformly once per batch and shared by "
        "its queries (shared: joint negative sampling as DGL-KE's, one (B, d) x (d, k) product a step); "
        "the other queries' true tails of the batch (in_batch: negatives > 0 caps them; a candidate that is "
        "the query's own answer is masked); or hard: a share (hard_fraction) drawn from another model's "
        "top-k of the query (train.hard_negatives, a cache written by 'kgdistill cache'; its training "
        "answers left out), the rest uniformly, as a re-ranker meets them at test time",
    )
    hard_negatives: str | None = Field(
        None,
        description="negative_sampling: hard: a top-k teacher cache of the training queries (kgdistill "
        "cache RETRIEVER --out OUT -k 50), whose candidates the hard negatives are drawn from",
    )
    hard_fraction: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="negative_sampling: hard: the share of train.negatives drawn from the cache's top-k",
    )
    self_negatives: bool = Field(
        False,
        description="in_batch only: each query's own head entity is one more negative (SimKGC's "
        "self-negatives; masked where the head is the answer): a text model, whose query holds the head's "
        "text, otherwise ranks the head itself first",
    )
    param_groups: list[ParamGroup] = Field(
        default_factory=list,
        description="per-group optimiser settings; parameters matching no group use the stage's",
    )
    scheduler: SchedulerConfig = SchedulerConfig()
    grad_clip: float | None = Field(
        None, gt=0, description="clip the gradients' total L2 norm to this value (None: off)"
    )
    accumulate: int = Field(
        1, ge=1, description="optimiser step every this many batches (gradient accumulation)"
    )
    checkpoint_every: int = Field(
        1,
        ge=1,
        description="write last.safetensors every this many epochs (and at each stage end); a resumed "
        "run replays the epochs since, exactly",
    )
    eval_every: int = Field(
        5, ge=1, description="validate every this many epochs (and at each stage end)"
    )
    patience: int = Field(
        5, ge=0, description="stop a stage after this many validations without gain (0: never)"
    )
    min_delta: float = Field(
        0.0,
        ge=0,
        description="a validation counts as a gain for early stopping only above best + min_delta",
    )
    eval_max_queries: int | None = Field(
        None, ge=1, description="validate on the first n valid facts only"
    )
    epoch_queries: int | None = Field(
        None,
        ge=1,
        description="train each epoch on this many queries, a new random draw of the training queries (both "
        "directions) per epoch; None: all of them. For models whose full epoch takes hours (a PLM on a CPU)",
    )
    shard_entities: bool = Field(
        False,
        description="under torchrun with several processes: each rank holds a contiguous block of the entity "
        "table's rows (with its gradient and optimiser state) instead of the whole table; 1-N training of "
        "q @ E^T models (distmult, complex, tntcomplex, ta_distmult) without teachers. One process: ignored",
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1, ...")
    amp: bool = Field(False, description="bfloat16 autocast on CUDA")
    tf32: bool = Field(True, description="TF32 matmuls on CUDA")
    compile: Literal["default", "reduce-overhead", "max-autotune"] | None = Field(
        None,
        description="torch.compile the training step (the model's and the teachers' forward, the objective and, "
        "through AOTAutograd, the backward) with this mode; reduce-overhead also replays it as a CUDA graph. "
        "For small models on a GPU, whose steps are bound by kernel launches. None: eager. Numbers equal "
        "eager's up to float rounding; the first steps (and the last, smaller batch of an epoch) compile. A "
        "step sharded by train.shard_entities stays eager",
    )
    progress: bool = True
    keep_freed_memory: bool = Field(
        True,
        description="Linux: keep freed large blocks for reuse (1-N steps about 1.8x faster on CPU; memory "
        "is returned to the OS only when the run ends)",
    )

    @field_validator("negative_sampling")
    @classmethod
    def _shared_needs_negatives(cls, value: str, info: ValidationInfo) -> str:
        if value == "shared" and info.data.get("negatives", 0) == 0:
            raise ValueError("shared negatives need train.negatives > 0 (how many a batch shares)")
        return value

    @model_validator(mode="after")
    def _hard_needs_a_cache(self) -> TrainConfig:
        if self.negative_sampling == "hard" and not self.hard_negatives:
            raise ValueError(
                "negative_sampling: hard draws from another model's top-k: give its cache "
                "(train.hard_negatives: a path written by 'kgdistill cache')"
            )
        if self.negative_sampling == "hard" and self.negatives == 0:
            raise ValueError("hard negatives need train.negatives > 0 (how many a query gets)")
        return self

    @field_validator("self_negatives")
    @classmethod
    def _self_negatives_need_in_batch(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("negative_sampling") != "in_batch":
            raise ValueError(
                "self-negatives extend in-batch candidates: set train.negative_sampling: in_batch"
            )
        return value


class EvalConfig(_Strict):
    split: str = "test"
    filtered: bool = True
    time_aware: bool = True
    time_filter: TimeFilter = Field(
        "validity",
        description="which time-aware filter (temporal graphs, time_aware: true): validity = answers true at "
        "the query's time (its bin inside their interval, or the same day); timestamp = answers of known "
        "quadruples with the query's own time id (tkbc / TeRo papers)",
    )
    ties: Literal["optimistic", "pessimistic", "realistic"] = "realistic"
    ks: list[int] = Field(default_factory=lambda: [1, 3, 10])
    batch_size: int | None = Field(None, ge=1)
    max_queries: int | None = Field(
        None,
        ge=1,
        description="the final evaluation reads the split's first n facts only (a slow model)",
    )
    retriever: str | None = Field(
        None,
        description="a finished run (or checkpoint) on the same graph: validation and the final evaluation "
        "re-rank its filtered top-rerank_k (how a cross-encoder or a generative model is evaluated)",
    )
    rerank_k: int = Field(100, ge=1, description="candidates per query taken from eval.retriever")
    rerank_mix: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="the retriever's weight when its scores are fused with the re-ranker's over the "
        "candidates (log-softmax of each, mixed linearly; 0: the re-ranker alone)",
    )


class RunConfig(_Strict):
    """A whole run. A teacher is one stage of ``supervised_ce`` (+ regularisers); distillation adds teachers."""

    seed: int = 0
    name: str | None = Field(None, description="run name (default: the config file's stem)")
    data: DataConfig = DataConfig()
    model: ModelSpec
    teachers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    stages: list[StageConfig] = Field(default_factory=lambda: [StageConfig()])
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


def _format(err: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (*prefix, *e["loc"]))
        if not loc and e["type"] == "value_error":
            # a check of the whole section (a model validator): its message names the key
            lines.append(e["msg"].removeprefix("Value error, "))
        elif e["type"] == "extra_forbidden":
            known = _known_keys((*prefix, *e["loc"][:-1]))
            hint = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            lines.append(f"config key '{loc}' does not exist{extra}")
        elif e["type"] == "missing":
            lines.append(f"config key '{loc}' is missing")
        else:
            got = repr(e.get("input"))
            got = got if len(got) <= 80 else got[:77] + "..."
            hint = ""
            if e["type"] == "invalid_key" and isinstance(e.get("input"), bool):
                hint = " (YAML reads a bare on/off/yes/no as a boolean: quote the key)"
            lines.append(f"config key '{loc}': {e['msg']} (got {got}){hint}")
    return "; ".join(lines)


_Section = TypeVar("_Section", bound=BaseModel)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = RunConfig
    for p in loc:
        if isinstance(p, int):
            continue
        field = getattr(model, "model_fields", {}).get(p)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next(
            (a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def validate_section(cls: type[_Section], data: Mapping[str, Any], where: str) -> _Section:
    """Validate ``data`` as the config section ``where`` (e.g. ``eval``); errors name ``where.<key>``."""
    try:
        return cls.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(_format(e, tuple(where.split(".")))) from None


def parse_config(raw: Mapping[str, Any]) -> RunConfig:
    """Validate a raw mapping into a :class:`RunConfig` (errors name the key)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(dict(raw))
    except ValidationError as e:
        raise ConfigError(_format(e)) from None


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (``stages.0.epochs=10`` indexes lists); values are parsed as YAML.

    The one parser of ``KEY=VALUE`` assignments: ``--set`` of every verb and ``encode --option`` use it.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key.path=value")
        path, text = item.split("=", 1)
        value = yaml.safe_load(text) if text.strip() else None
        keys = path.strip().split(".")
        node: Any = raw
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not k.isdigit() or int(k) >= len(node):
                    raise ConfigError(
                        f"override '{path}': '{k}' is not an index of a list of {len(node)}"
                    )
                if last:
                    node[int(k)] = value
                else:
                    node = node[int(k)]
            elif isinstance(node, dict):
                if last:
                    node[k] = value
                else:
                    node = node.setdefault(k, {})
            else:
                raise ConfigError(f"override '{path}': '{'.'.join(keys[:i])}' is not a section")
    return raw


def read_yaml_mapping(path: Path, what: str = "config") -> dict[str, Any]:
    """The mapping a YAML file holds (``{}`` for an empty file).

    Raises:
        ConfigError: the file is missing (``<what> file not found``), not YAML, or not a mapping at the top.
    """
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded or {}


def load_config(
    path: str | Path | None, overrides: Iterable[str] = (), base: Mapping[str, Any] | None = None
) -> tuple[RunConfig, dict[str, Any]]:
    """Read a YAML config (or start from ``base``), apply overrides, validate.

    Returns:
        The validated config and the raw mapping it came from.
    """
    raw: dict[str, Any] = dict(base or {})
    if path is not None:
        p = Path(path)
        raw.update(read_yaml_mapping(p))
        raw.setdefault("name", p.stem)
    raw = apply_overrides(raw, overrides)
    return parse_config(raw), raw
