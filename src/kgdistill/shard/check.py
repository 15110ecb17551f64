"""What ``train.shard_entities`` accepts: checked from the config alone, before any data is read."""

from __future__ import annotations

import torch

from kgdistill.config import RunConfig
from kgdistill.errors import ConfigError
from kgdistill.models.base import Vocab
from kgdistill.models.zoo import MODELS, feature_options, model_features
from kgdistill.shard.layout import unshardable_reason
from kgdistill.shard.step import SUPPORTED_TERMS

__all__ = ["KEY", "check_config", "refuse"]

#: the config key of the feature
KEY = "train.shard_entities"


def refuse(why: str) -> ConfigError:
    """The one error of an unsupported combination: names the key and what to change."""
    return ConfigError(f"config key '{KEY}': {why}")


def check_config(cfg: RunConfig) -> None:
    """Raise one :class:`~kgdistill.errors.ConfigError` naming ``train.shard_entities`` when the config asks
    for a sharded entity table with something it does not support; nothing when it does not ask for one.

    Supported: 1-N training (``train.negatives: 0``) of a model scoring ``q @ E^T`` over a table of free
    embeddings (DistMult, ComplEx, TNTComplEx, TA-DistMult), objectives of ``supervised_ce`` (label smoothing
    included) and the regularisers ``n3``, ``l2``, ``lambda3``, without teachers or a re-ranking retriever.
    """
    if not cfg.train.shard_entities:
        return
    name = cfg.model.name
    if cfg.model.kwargs().get("history"):
        raise refuse("the recurrence term (model.history) reads the whole training graph per query")
    if model_features(name):
        raise refuse(
            f"model '{name}' computes its entity vectors with a text encoder; only a table of free "
            "embeddings can be sharded by rows"
        )
    # a 2-entity copy of the configured model tells how it scores (cheap; its keys were checked already)
    kwargs = {k: v for k, v in cfg.model.kwargs().items() if k not in feature_options(name)}
    # built without drawing from the seeded generator the run's own model is initialised from
    with torch.random.fork_rng(devices=[]):
        probe = MODELS.build({"name": name, **kwargs}, where="model", vocab=Vocab(2, 1, ("0", "1")))
    reason = unshardable_reason(probe)
    if reason is not None:
        raise refuse(
            f"model '{name}' cannot be sharded: {reason} (supported: distmult, complex, tntcomplex, "
            "ta_distmult)"
        )
    if cfg.train.negatives > 0 or cfg.train.negative_sampling == "in_batch":
        raise refuse(
            "sharding needs 1-N training (train.negatives: 0, train.negative_sampling: uniform); sampled "
            "candidates would live on other ranks"
        )
    if cfg.teachers:
        raise refuse(
            f"teachers ({', '.join(cfg.teachers)}) are not supported: their terms read the student's whole "
            "score matrix; distil without sharding"
        )
    if cfg.eval.retriever is not None:
        raise refuse("re-ranking (eval.retriever) is not supported; evaluate without it")
    for i, stage in enumerate(cfg.stages):
        for j, term in enumerate(stage.objective):
            loss = term.as_dict()["loss"]
            if loss not in SUPPORTED_TERMS:
                raise refuse(
                    f"loss '{loss}' (stages.{i}.objective.{j}) is not supported with a sharded table "
                    f"(supported: {', '.join(SUPPORTED_TERMS)})"
                )
