"""The model registry: thin builders composing representations and interactions.

Every builder takes the :class:`Vocab` (given by the caller, not the config) and keyword arguments that are
exactly the config keys of the ``model`` section. ``dim`` is the number of real components per entity for
real-valued models and the complex rank for ComplEx, RotatE and TNTComplEx (which store ``2 * dim`` reals).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import torch
from pydantic import Field, PositiveFloat, PositiveInt

from kgdistill.errors import ConfigError
from kgdistill.models.base import KGEModel, Vocab
from kgdistill.models.hyte import HyTE
from kgdistill.models.interactions import ComplEx, DistMult, Interaction, RotatE, TransE
from kgdistill.models.representations import AddTime, LSTMTime, MulTime, StaticRelations, embedding
from kgdistill.models.text import LLMScorer, encode_kg
from kgdistill.registry import Registry

__all__ = ["MODELS", "is_temporal"]

MODELS: Registry[Callable[..., KGEModel]] = Registry("model")


def _register(
    name: str, temporal: bool
) -> Callable[[Callable[..., KGEModel]], Callable[..., KGEModel]]:
    def deco(fn: Callable[..., KGEModel]) -> Callable[..., KGEModel]:
        fn.temporal = temporal  # type: ignore[attr-defined]
        return MODELS.register(name)(fn)

    return deco


def is_temporal(name: str) -> bool:
    """Whether the registered model ``name`` needs a time column."""
    return bool(getattr(MODELS.get(name), "temporal", False))


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


@_register("transe", temporal=False)
def transe(
    *, vocab: Vocab, dim: PositiveInt = 200, p: PositiveFloat = 2.0, init_scale: PositiveFloat = 0.1
) -> KGEModel:
    """TransE, ``-||h + r - t||_p``. Paper: Bordes et al. 2013, https://papers.nips.cc/paper/5071"""
    return _static(vocab, dim, init_scale, TransE(p=p))


@_register("distmult", temporal=False)
def distmult(*, vocab: Vocab, dim: PositiveInt = 200, init_scale: PositiveFloat = 1e-3) -> KGEModel:
    """DistMult, ``<h, r, t>``. Paper: Yang et al. 2015, https://arxiv.org/abs/1412.6575"""
    return _static(vocab, dim, init_scale, DistMult())


@_register("complex", temporal=False)
def complex_(*, vocab: Vocab, dim: PositiveInt = 200, init_scale: PositiveFloat = 1e-3) -> KGEModel:
    """ComplEx, ``Re(<h, r, conj t>)``, rank ``dim``. Paper: Trouillon et al. 2016, https://arxiv.org/abs/1606.06357"""
    return _static(vocab, 2 * dim, init_scale, ComplEx())


@_register("rotate", temporal=False)
def rotate(*, vocab: Vocab, dim: PositiveInt = 200, init_scale: PositiveFloat = 0.1) -> KGEModel:
    """RotatE, ``-||h * e^{i theta_r} - t||``, rank ``dim``. Paper: Sun et al. 2019, https://arxiv.org/abs/1902.10197"""
    return _static(vocab, 2 * dim, init_scale, RotatE(p=2.0), rel_width=dim)


@_register("ttranse", temporal=True)
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


@_register("ta_distmult", temporal=True)
def ta_distmult(
    *, vocab: Vocab, dim: PositiveInt = 100, init_scale: PositiveFloat = 0.1
) -> KGEModel:
    """TA-DistMult: DistMult with an LSTM over relation and time tokens. Paper: García-Durán et al. 2018,
    https://arxiv.org/abs/1809.03202"""
    return _time_aware(vocab, dim, init_scale, DistMult())


@_register("ta_transe", temporal=True)
def ta_transe(
    *, vocab: Vocab, dim: PositiveInt = 100, p: PositiveFloat = 2.0, init_scale: PositiveFloat = 0.1
) -> KGEModel:
    """TA-TransE: TransE with an LSTM over relation and time tokens. Paper: García-Durán et al. 2018,
    https://arxiv.org/abs/1809.03202"""
    return _time_aware(vocab, dim, init_scale, TransE(p=p))


@_register("hyte", temporal=True)
def hyte(*, vocab: Vocab, dim: PositiveInt = 100, init_scale: PositiveFloat = 0.1) -> KGEModel:
    """HyTE: TransE on time hyperplanes. Paper: Dasgupta et al. 2018, https://aclanthology.org/D18-1225"""
    return HyTE.build(
        num_entities=vocab.num_entities,
        num_relations=2 * vocab.num_relations,
        num_times=vocab.num_times,
        dim=dim,
        init_scale=init_scale,
    )


@_register("tntcomplex", temporal=True)
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


@_register("llm_scorer", temporal=False)
def llm_scorer(
    *,
    vocab: Vocab,
    kg: Any = None,
    encoder: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
    cache_dir: str | None = None,
    text_dim: PositiveInt | None = None,
    dim: PositiveInt = 256,
    hidden: PositiveInt = 512,
    entity_bias: bool = True,
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0,
) -> KGEModel:
    """The LLM scorer: a light head over frozen LLM text encodings (see :mod:`kgdistill.models.text`).

    Given the dataset (training), the texts of its entities, relations and times are encoded with ``encoder``
    (default: the packaged all-MiniLM-L6-v2), through the on-disk cache in ``cache_dir``. Without it (loading
    a checkpoint), the frozen encodings come from the checkpoint and only ``text_dim`` is needed.
    Paper: "Knowledge Distillation for Temporal Knowledge Graph Reasoning with Large Language Models" (the LLM
    scorer that gives the soft targets of its two-stage distillation).
    """
    report = None
    if kg is not None:
        ent, rel, tim, report = encode_kg(kg, encoder=encoder, text=text, cache_dir=cache_dir)
        if text_dim is not None and text_dim != ent.shape[1]:
            raise ConfigError(
                f"config key 'model.text_dim': {text_dim}, but the encoder gives {ent.shape[1]}-d vectors"
            )
    elif text_dim is None:
        raise ConfigError(
            "config key 'model.text_dim' is needed to build an llm_scorer without its dataset"
        )
    else:  # loading a checkpoint: its state dict fills the frozen encodings
        ent = torch.zeros(vocab.num_entities, text_dim)
        rel = torch.zeros(2 * vocab.num_relations, text_dim)
        tim = torch.zeros(vocab.num_times, text_dim) if vocab.num_times else None
    model = LLMScorer(
        entity_text=ent,
        relation_text=rel,
        time_text=tim,
        dim=dim,
        hidden=hidden,
        entity_bias=entity_bias,
        dropout=dropout,
    )
    if report is not None:
        model.text_report = report  # type: ignore[attr-defined]
    return model


llm_scorer.needs_kg = True  # type: ignore[attr-defined]


def build_model(spec: dict[str, Any], vocab: Vocab, kg: Any = None) -> KGEModel:
    """Build ``spec = {"name": ..., **kwargs}``; wrong keys name ``model.<key>``.

    ``kg`` (the training data) is passed on to builders that need it (``needs_kg``: text-based models).
    """
    context: dict[str, Any] = {"vocab": vocab}
    if getattr(MODELS.get(spec["name"]), "needs_kg", False):
        context["kg"] = kg
    return MODELS.build(spec, where="model", **context)  # type: ignore[no-any-return]
