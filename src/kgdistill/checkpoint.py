"""Self-describing checkpoints: one safetensors file, its JSON metadata in the header, written atomically.

A checkpoint holds ``model.*`` tensors (and, for ``last``, ``optim.*`` / ``objective.*`` tensors and the RNG
state) plus a JSON header ``{"format", "kgdistill_version", "config", "model": {"name", "kwargs"},
"id_maps", "time", "epoch", "stage", "best", ...}``. ``model`` plus ``id_maps`` rebuild the model without the
data (nanoGPT's ``model_args``), and nothing is ever unpickled. Files are written atomically
(:mod:`kgdistill.io`), so a kill at any moment leaves either the old or the new file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kgdistill.data.time import TimeSpec
from kgdistill.errors import CheckpointError
from kgdistill.features import TextFeatures
from kgdistill.io import atomic_save_tensors, read_safetensors
from kgdistill.models.base import KGEModel, Vocab
from kgdistill.models.history import history_placeholder
from kgdistill.models.zoo import build_model, model_features
from kgdistill.plm.causal import LMFeatures
from kgdistill.plm.features import PLMFeatures
from kgdistill.vocab import GraphVocab, record_vocab

__all__ = [
    "FORMAT",
    "Checkpoint",
    "load_checkpoint",
    "load_model",
    "placeholder_features",
    "save_checkpoint",
]

FORMAT = 1
_META_KEY = "kgdistill"


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for k, v in pstate.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, v in tensors.items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for pid, extra in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(extra)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    objective: torch.nn.Module | None = None,
    rng: bool = False,
) -> None:
    """Write ``model`` (+ optimizer, objective parameters, RNG state) with ``meta`` as one atomic file.

    ``model`` / ``optimizer``: the objects, or their state dicts (a sharded table gathered whole,
    :mod:`kgdistill.shard.state`).
    """
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = {"format": FORMAT, **meta}
    if objective is not None:
        tensors.update(
            {
                f"objective.{k}": v.detach().cpu().contiguous().clone()
                for k, v in objective.state_dict().items()
            }
        )
    if optimizer is not None:
        opt_state = (
            optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else optimizer
        )
        opt_tensors, opt_meta = _flatten_optimizer(dict(opt_state))
        tensors.update(opt_tensors)
        meta["optimizer"] = opt_meta
    if rng:
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
    atomic_save_tensors(path, tensors, {_META_KEY: json.dumps(meta)})


@dataclass
class Checkpoint:
    """A loaded checkpoint: metadata and tensors grouped by prefix."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}

    @property
    def vocab(self) -> Vocab:
        ids = self.meta["id_maps"]
        return Vocab(
            num_entities=len(ids["entity"]),
            num_relations=len(ids["relation"]),
            time_labels=tuple(ids.get("time", ())),
        )

    @property
    def time(self) -> TimeSpec:
        return TimeSpec.from_dict(self.meta["time"])

    def optimizer_state(self) -> dict[str, Any] | None:
        if "optimizer" not in self.meta:
            return None
        return _unflatten_optimizer(self.group("optim"), self.meta["optimizer"])


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file (or ``best.safetensors`` in a run folder); clear errors for bad files."""
    p = Path(path)
    if p.is_dir():
        p = p / "best.safetensors"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    header, tensors = read_safetensors(p, "checkpoint")
    if _META_KEY not in header:
        raise CheckpointError(f"{p}: not a kgdistill checkpoint (no '{_META_KEY}' metadata)")
    try:
        meta = json.loads(header[_META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p}: corrupt metadata ({e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{p}: checkpoint format {meta.get('format')} is not supported (need {FORMAT})"
        )
    return Checkpoint(path=p, meta=meta, tensors=tensors)


def placeholder_features(ckpt: Checkpoint) -> dict[str, Any]:
    """Features of the right shapes for rebuilding the checkpoint's model (its state dict fills them).

    Reads ``model.features.text.dim`` (or ``text_dim`` among the kwargs of checkpoints written before features
    were computed outside the model), and for a bi-encoder ``model.features.plm`` (the encoder's config, the
    token tables' shapes and special tokens) or a generative model ``model.features.lm``.
    """
    spec = ckpt.meta["model"]
    out: dict[str, Any] = {}
    if "text" in model_features(spec["name"]):
        dim = spec.get("features", {}).get("text", {}).get("dim") or spec["kwargs"].get("text_dim")
        if not dim:
            raise CheckpointError(f"{ckpt.path}: a text model without the width of its encodings")
        v = ckpt.vocab
        out["text"] = TextFeatures.placeholder(
            v.num_entities, v.num_relations, v.num_times, int(dim)
        )
    if "plm" in model_features(spec["name"]):
        meta = spec.get("features", {}).get("plm")
        if not meta or "shapes" not in meta:
            raise CheckpointError(
                f"{ckpt.path}: a bi-encoder without its encoder config and text shapes"
            )
        out["plm"] = PLMFeatures.placeholder(meta)
    if spec.get("features", {}).get("history"):
        out["history"] = history_placeholder(spec["features"]["history"])
    if "lm" in model_features(spec["name"]):
        meta = spec.get("features", {}).get("lm")
        if not meta or "shapes" not in meta:
            raise CheckpointError(
                f"{ckpt.path}: a generative model without its LM config and text shapes"
            )
        out["lm"] = LMFeatures.placeholder(meta)
    return out


def load_model(ckpt: Checkpoint, model: KGEModel | None = None) -> KGEModel:
    """Rebuild the checkpoint's model (or fill ``model``) and load its weights; the model records the graph it
    was trained on (:mod:`kgdistill.vocab`)."""
    spec = ckpt.meta["model"]
    if model is None:
        kwargs = {k: v for k, v in spec["kwargs"].items() if k != "text_dim"}  # older checkpoints
        model = build_model(
            {"name": spec["name"], **kwargs}, ckpt.vocab, features=placeholder_features(ckpt)
        )
    try:
        model.load_state_dict(ckpt.group("model"), strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise CheckpointError(
            f"{ckpt.path}: holds a '{spec['name']}' model {spec['kwargs']} that does not fit "
            f"the model it is loaded into ({first})"
        ) from None
    record_vocab(model, GraphVocab.of_checkpoint(ckpt.meta))
    _keep_entity_table(model, ckpt)
    return model


def entity_table_path(path: Path) -> Path:
    """Where the entity vectors encoded from checkpoint ``path`` are kept: ``<stem>.entities.safetensors``."""
    return path.with_name(f"{path.stem}.entities.safetensors")


def _keep_entity_table(model: KGEModel, ckpt: Checkpoint) -> None:
    """A model whose entity vectors a text encoder computes (the bi-encoder) keeps them beside the checkpoint,
    keyed by a digest of the entity side's tensors: the next load of the same weights reads them instead of
    encoding every entity again (minutes on a CPU for WN18RR's 40,943)."""
    from kgdistill.models.plm import PLMEntities

    entities = getattr(model, "entities", None)
    if not isinstance(entities, PLMEntities):
        return
    digest = hashlib.sha256()
    for name in sorted(k for k in ckpt.tensors if k.startswith("model.entities.")):
        t = ckpt.tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    entities.keep_on_disk(entity_table_path(ckpt.path), digest.hexdigest())
