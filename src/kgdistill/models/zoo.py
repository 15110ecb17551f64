"""The model registry: thin builders composing representations and interactions.

Every builder takes the :class:`Vocab` (given by the caller, not the config), the features it declares
(computed before the model by :mod:`kgdistill.features`, handed in as tensors) and keyword arguments that are
exactly the config keys of the ``model`` section (validated by type before the call). ``dim`` is the number of
real components per entity for real-valued models and the complex rank for ComplEx, RotatE and TNTComplEx
(which store ``2 * dim`` reals).

Each entry also declares how it uses time (:data:`TimeUse`): ``none`` (static), ``required`` (needs a time
column) or ``optional`` (works on both, reads the time when the graph has one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from kgdistill.errors import ConfigError
from kgdistill.features import TEXT_OPTIONS, TextFeatures
from kgdistill.models.base import KGEModel, Vocab
from kgdistill.models.bi_encoder import BiEncoder
from kgdistill.models.cross_encoder import CrossEncoder
from kgdistill.models.generative import GenerativeLM
from kgdistill.models.history import HISTORY_OPTIONS, HistoryTerm
from kgdistill.models.hyte import HyTE
from kgdistill.models.interactions import (
    ComplEx,
    DistMult,
    Interaction,
    RotatE,
    TimePlexComplEx,
    TransE,
)
from kgdistill.models.representations import (
    AddTime,
    LSTMTime,
    MulTime,
    StaticRelations,
    TimePlexRelations,
    embedding,
)
from kgdistill.models.text import LLMScorer
from kgdistill.plm.causal import LM_OPTIONS, LMFeatures
from kgdistill.plm.features import PLM_OPTIONS, PLMFeatures
from kgdistill.registry import Registry
from kgdistill.vocab import GraphVocab, record_vocab

__all__ = [
    "MODELS",
    "TimeUse",
    "attach_history",
    "build_model",
    "is_temporal",
    "model_features",
    "time_use",
]

MODELS: Registry[Callable[..., KGEModel]] = Registry("model")

#: How a model uses time: never, always (a time column is required) or when the graph has one.
TimeUse = Literal["none", "required", "optional"]

#: Feature kinds a builder can declare, with the config keys of the ``model`` section that configure them.
_FEATURE_OPTIONS: dict[str, frozenset[str]] = {
    "text": TEXT_OPTIONS,
    "plm": PLM_OPTIONS,
    "lm": LM_OPTIONS,
}


def _register(
    name: str, time: TimeUse = "none", features: tuple[str, ...] = ()
) -> Callable[[Callable[..., KGEModel]], Callable[..., KGEModel]]:
    def deco(fn: Callable[..., KGEModel]) -> Callable[..., KGEModel]:
        fn.time_use = time  # type: ignore[attr-defined]
        fn.features = features  # type: ignore[attr-defined]
        return MODELS.register(name)(fn)

    return deco


def time_use(name: str) -> TimeUse:
    """How the registered model ``name`` uses time (``none``, ``required``, ``optional``)."""
    return getattr(MODELS.get(name), "time_use", "none")  # type: ignore[no-any-return]


def is_temporal(name: str) -> bool:
    """Whether the registered model ``name`` needs a time column."""
    return time_use(name) == "required"


def model_features(name: str) -> tuple[str, ...]:
    """Feature kinds the registered model ``name`` is built from (``("text",)`` for the LLM scorer)."""
    return tuple(getattr(MODELS.get(name), "features", ()))


def feature_options(name: str) -> frozenset[str]:
    """Config keys of the ``model`` section that configure the model's features, not the model (``history``,
    the recurrence term of :mod:`kgdistill.models.history`, for every model)."""
    return HISTORY_OPTIONS.union(*(_FEATURE_OPTIONS[f] for f in model_features(name)))


def _static(
    vocab: Vocab,
    width: int,
    init_scale: float,
    interaction: Interaction,
    rel_width: int | None = None,
) -> KGEModel:
    return KGEModel(
        entities=embedding(vocab.num_entities, width, init_scale),
        relations=StaticRelations(
            num_relations=2 * vocab.num_relations, dim=rel_width or width, init_scale=init_scale
        ),
        interaction=interaction,
    )


@_register("transe")
def transe(
    *, vocab: Vocab, dim: PositiveInt = 200, p: PositiveFloat = 2.0, init_scale: PositiveFloat = 0.1
) -> KGEModel:
    """TransE, ``-||h + r - t||_p``. Paper: Bordes et al. 2013, https://papers.nips.cc/paper/5071"""
    return _static(vocab, dim, init_scale, TransE(p=p))


@_register("distmult")
def distmult(*, vocab: Vocab, dim: PositiveInt = 200, init_scale: PositiveFloat = 1e-3) -> KGEModel:
    """DistMult, ``<h, r, t>``. Paper: Yang et al. 2015, https://arxiv.org/abs/1412.6575"""
    return _static(vocab, dim, init_scale, DistMult())


@_register("complex")
def complex_(*, vocab: Vocab, dim: PositiveInt = 200, init_scale: PositiveFloat = 1e-3) -> KGEModel:
    """ComplEx, ``Re(<h, r, conj t>)``, rank ``dim``. Paper: Trouillon et al. 2016, https://arxiv.org/abs/1606.06357"""
    return _static(vocab, 2 * dim, init_scale, ComplEx())


@_register("rotate")
def rotate(*, vocab: Vocab, dim: PositiveInt = 200, init_scale: PositiveFloat = 0.1) -> KGEModel:
    """RotatE, ``-||h * e^{i theta_r} - t||``, rank ``dim``. Paper: Sun et al. 2019, https://arxiv.org/abs/1902.10197"""
    return _static(vocab, 2 * dim, init_scale, RotatE(p=2.0), rel_width=dim)


@_register("ttranse", time="required")
def ttranse(
    *, vocab: Vocab, dim: PositiveInt = 100, p: PositiveFloat = 2.0, init_scale: PositiveFloat = 0.1
) -> KGEModel:
    """TTransE, ``-||h + r + tau - t||_p``. Paper: Leblay and Chekol 2018, https://doi.org/10.1145/3184558.3191639"""
    return KGEModel(
        entities=embedding(vocab.num_entities, dim, init_scale),
        relations=AddTime(
            num_relations=2 * vocab.num_relations,
            num_times=vocab.num_times,
            dim=dim,
            init_scale=init_scale,
        ),
        interaction=TransE(p=p),
    )


def _time_aware(vocab: Vocab, dim: int, init_scale: float, interaction: Interaction) -> KGEModel:
    """A TA-* model: ``interaction`` on an LSTM over the relation and its time's tokens."""
    return KGEModel(
        entities=embedding(vocab.num_entities, dim, init_scale),
        relations=LSTMTime(
            num_relations=2 * vocab.num_relations,
            time_labels=vocab.time_labels,
            dim=dim,
            init_scale=init_scale,
        ),
        interaction=interaction,
    )


@_register("ta_distmult", time="required")
def ta_distmult(
    *, vocab: Vocab, dim: PositiveInt = 100, init_scale: PositiveFloat = 0.1
) -> KGEModel:
    """TA-DistMult: DistMult with an LSTM over relation and time tokens. Paper: García-Durán et al. 2018,
    https://arxiv.org/abs/1809.03202"""
    return _time_aware(vocab, dim, init_scale, DistMult())


@_register("ta_transe", time="required")
def ta_transe(
    *, vocab: Vocab, dim: PositiveInt = 100, p: PositiveFloat = 2.0, init_scale: PositiveFloat = 0.1
) -> KGEModel:
    """TA-TransE: TransE with an LSTM over relation and time tokens. Paper: García-Durán et al. 2018,
    https://arxiv.org/abs/1809.03202"""
    return _time_aware(vocab, dim, init_scale, TransE(p=p))


@_register("hyte", time="required")
def hyte(*, vocab: Vocab, dim: PositiveInt = 100, init_scale: PositiveFloat = 0.1) -> KGEModel:
    """HyTE: TransE on time hyperplanes. Paper: Dasgupta et al. 2018, https://aclanthology.org/D18-1225"""
    return HyTE.build(
        num_entities=vocab.num_entities,
        num_relations=2 * vocab.num_relations,
        num_times=vocab.num_times,
        dim=dim,
        init_scale=init_scale,
    )


@_register("tntcomplex", time="required")
def tntcomplex(
    *, vocab: Vocab, dim: PositiveInt = 156, init_scale: PositiveFloat = 1e-2
) -> KGEModel:
    """TNTComplEx, ``Re(<h, r * tau + r_nt, conj t>)``, rank ``dim``. Paper: Lacroix et al. 2020,
    https://arxiv.org/abs/2004.04926"""
    return KGEModel(
        entities=embedding(vocab.num_entities, 2 * dim, init_scale),
        relations=MulTime(
            num_relations=2 * vocab.num_relations,
            num_times=vocab.num_times,
            dim=2 * dim,
            init_scale=init_scale,
        ),
        interaction=ComplEx(),
    )


@_register("timeplex", time="required")
def timeplex(
    *,
    vocab: Vocab,
    dim: PositiveInt = 200,
    init_scale: PositiveFloat = 1e-2,
    beta: float = 1.0,
    gamma: float = 1.0,
) -> KGEModel:
    """TimePlex (base, without the recurrence features), ``Re(<h, r_so, conj t>) + gamma Re(<h, tau, conj t>)
    + beta Re(<t, r_ot, tau>)``, rank ``dim``: entity-time terms beside the relation's, so an entity's
    plausibility at a time is learned apart from the relation. Paper: Jain et al. 2020,
    https://arxiv.org/abs/2010.03526"""
    return KGEModel(
        entities=embedding(vocab.num_entities, 2 * dim, init_scale),
        relations=TimePlexRelations(
            num_relations=2 * vocab.num_relations,
            num_times=vocab.num_times,
            dim=2 * dim,
            init_scale=init_scale,
            beta=beta,
            gamma=gamma,
        ),
        interaction=TimePlexComplEx(),
    )


@_register("llm_scorer", time="optional", features=("text",))
def llm_scorer(
    *,
    vocab: Vocab,
    features: TextFeatures,
    dim: PositiveInt = 256,
    hidden: PositiveInt = 512,
    entity_bias: bool = True,
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0,
) -> KGEModel:
    """The LLM scorer: a light head over frozen LLM text encodings (see :mod:`kgdistill.models.text`).

    ``features`` are the text encodings of the graph's entities, relations and times, computed before the
    model (:func:`kgdistill.features.text_features`, configured by the ``model`` section's ``encoder``,
    ``text`` and ``cache_dir`` keys; default encoder: the packaged all-MiniLM-L6-v2). It reads the time when
    the graph has one. Paper: "Knowledge Distillation for Temporal Knowledge Graph Reasoning with Large Language
    Models" (the LLM scorer that gives the soft targets of its two-stage distillation).
    """
    if features.entities.shape[0] != vocab.num_entities:
        raise ConfigError(
            f"text features hold {features.entities.shape[0]} entities, the graph has {vocab.num_entities}"
        )
    return LLMScorer(
        features=features, dim=dim, hidden=hidden, entity_bias=entity_bias, dropout=dropout
    )


@_register("bi_encoder", time="optional", features=("plm",))
def bi_encoder(
    *,
    vocab: Vocab,
    features: PLMFeatures,
    dim: PositiveInt | None = None,
    temperature: PositiveFloat = 0.05,
    learn_temperature: bool = True,
    min_temperature: PositiveFloat = 0.01,
    max_temperature: PositiveFloat = 1.0,
    shared_encoder: bool = True,
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = None,
    chunk_size: PositiveInt = 256,
) -> KGEModel:
    """A bi-encoder over a trainable Hugging Face text encoder (see :mod:`kgdistill.models.bi_encoder`).

    ``features`` are the encoder's config and weights and the graph's tokenised texts, computed before the
    model (:func:`kgdistill.plm.plm_features`, configured by the ``model`` section's ``encoder`` (a local
    folder; default: the packaged all-MiniLM-L6-v2), ``text`` and ``max_length`` keys). Scores are
    ``cos(q, t) / T``; it reads the time when the graph has one. Train it with in-batch negatives and the
    ``info_nce`` term. Paper: Wang et al. 2022 (SimKGC), https://arxiv.org/abs/2203.02167
    """
    n = features.entities.ids.shape[0]
    if n != vocab.num_entities:
        raise ConfigError(f"PLM features hold {n} entities, the graph has {vocab.num_entities}")
    if not min_temperature <= temperature <= max_temperature:
        raise ConfigError(
            f"config key 'model.temperature': {temperature} is outside "
            f"[min_temperature, max_temperature] = [{min_temperature}, {max_temperature}]"
        )
    return BiEncoder(
        features=features,
        dim=dim,
        temperature=temperature,
        learn_temperature=learn_temperature,
        min_temperature=min_temperature,
        max_temperature=max_temperature,
        shared_encoder=shared_encoder,
        dropout=dropout,
        chunk_size=chunk_size,
    )


@_register("cross_encoder", time="optional", features=("plm",))
def cross_encoder(
    *,
    vocab: Vocab,
    features: PLMFeatures,
    dim: PositiveInt | None = None,
    pooling: Literal["cls", "mean"] = "mean",
    dropout: Annotated[float, Field(ge=0, lt=1)] | None = None,
    chunk_size: PositiveInt = 256,
) -> KGEModel:
    """A cross-encoder over a trainable Hugging Face text encoder (see :mod:`kgdistill.models.cross_encoder`).

    Built from the same features as ``bi_encoder`` (the ``model`` section's ``encoder``, ``text`` and
    ``max_length`` keys; ``max_length`` is the window of the joint ``head, relation, tail`` text). One encoder
    pass per ``(query, candidate)`` pair and a linear head on the mean-pooled (``pooling: cls``: the ``[CLS]``)
    vector, with a ``tanh`` layer of width ``dim`` before it when given. Train it with sampled negatives
    (``train.negatives``) and ``supervised_ce`` or ``negative_sampling``; on a real graph use it as a re-ranker
    (:func:`kgdistill.evaluate.evaluate_rerank`): ranking all entities costs one pass per entity and query.
    It reads the time when the graph has one. Paper: Yao et al. 2019 (KG-BERT), https://arxiv.org/abs/1909.03193
    """
    n = features.entities.ids.shape[0]
    if n != vocab.num_entities:
        raise ConfigError(f"PLM features hold {n} entities, the graph has {vocab.num_entities}")
    return CrossEncoder(
        features=features, dim=dim, pooling=pooling, dropout=dropout, chunk_size=chunk_size
    )


@_register("generative", time="optional", features=("lm",))
def generative(
    *,
    vocab: Vocab,
    features: LMFeatures,
    length_norm: bool = False,
    chunk_size: PositiveInt = 64,
    shared_prompt: bool = True,
) -> KGEModel:
    """A causal language model that generates the answer entity's name (see :mod:`kgdistill.models.generative`).

    ``features`` are the LM's config and weights and the graph's tokenised texts, computed before the model
    (:func:`kgdistill.plm.causal.lm_features`, configured by the ``model`` section's ``lm`` (a local causal-LM
    folder; default: the packaged SmolLM2-135M-Instruct), ``text``, ``max_length`` (the prompt window) and
    ``answer_length`` keys). A candidate's score is the LM's log-likelihood of its name given the prompt
    ``head | relation [| time]`` (per token with ``length_norm``). Train it with the ``generation`` term and
    ``train.negatives >= 1``; on a real graph use it as a re-ranker (:func:`kgdistill.evaluate.evaluate_rerank`):
    ranking all entities costs one LM pass per entity and query (answers only with ``shared_prompt``: the
    prompt is passed once per query, its keys and values shared). It reads the time when the graph has one.
    Paper: Chen et al. 2022 (KG-S2S), https://arxiv.org/abs/2209.07299; also Xie et al. 2022 (GenKGC),
    https://arxiv.org/abs/2202.02113
    """
    n = features.entities.ids.shape[0]
    if n != vocab.num_entities:
        raise ConfigError(f"LM features hold {n} entities, the graph has {vocab.num_entities}")
    return GenerativeLM(
        features=features,
        length_norm=length_norm,
        chunk_size=chunk_size,
        shared_prompt=shared_prompt,
    )


def attach_history(model: KGEModel, name: str, index: Any, vocab: Vocab) -> None:
    """Give ``model`` the recurrence term over ``index`` (the training facts, :func:`history_features`).

    Raises:
        ConfigError: the model scores otherwise than through :class:`KGEModel`'s paths (names
            ``model.history``).
    """
    own = (KGEModel.score_all, KGEModel.scored, KGEModel.forward, KGEModel.score_hrt)
    mine = (type(model).score_all, type(model).scored, type(model).forward, type(model).score_hrt)
    if own != mine:
        raise ConfigError(
            f"config key 'model.history': model '{name}' scores through its own paths, which the "
            "recurrence term does not join (an embedding model such as tntcomplex, timeplex, ta_distmult)"
        )
    model.history = HistoryTerm(index, vocab.num_entities)


def build_model(
    spec: dict[str, Any], vocab: Vocab, features: dict[str, Any] | None = None
) -> KGEModel:
    """Build ``spec = {"name": ..., **kwargs}``; wrong keys or values name ``model.<key>``.

    Args:
        spec: the ``model`` section; the keys that configure features (``encoder``, ``text``, ``cache_dir``,
            ``max_length``) are not passed to the builder.
        vocab: sizes and time labels of the graph.
        features: feature kind -> features (``{"text": TextFeatures}``, ``{"plm": PLMFeatures}``), for the
            models that declare them.
    """
    name = spec["name"]
    kinds = model_features(name)
    missing = [k for k in kinds if k not in (features or {})]
    if missing:
        raise ConfigError(
            f"model '{name}' is built from {', '.join(missing)} features, which were not computed"
        )
    options = feature_options(name)
    kwargs = {k: v for k, v in spec.items() if k not in options}
    context: dict[str, Any] = {"vocab": vocab}
    if kinds:
        context["features"] = (features or {})[kinds[0]]
    model: KGEModel = MODELS.build(kwargs, where="model", **context)
    if (features or {}).get("history") is not None:
        attach_history(model, name, features["history"], vocab)  # type: ignore[index]
    # the sizes it is built for, so that evaluating it on another graph is one clear error (kgdistill.vocab)
    record_vocab(model, GraphVocab(vocab.num_entities, vocab.num_relations, vocab.time_labels))
    return model
