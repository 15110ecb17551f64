"""Run folders to serve: names, checks at startup, loading.

``RUN`` arguments are ``PATH`` (served under the folder's name) or ``NAME=PATH``; ``PATH`` is a run folder, a
checkpoint, or an ONNX file written by ``kgdistill export --format onnx`` (scored by ONNX Runtime; labels and the
time protocol come from the file's metadata; without the training data, answers are not marked known).
Everything that would make a run unservable (a missing folder, a folder without ``best.safetensors``, an
unfinished run, a checkpoint of another format version, a top-k ONNX graph, two runs under one name) is found
before the server starts and reported as one :class:`~kgdistill.errors.KGDistillError` (``kgdistill serve``
exits with status 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kgdistill.errors import KGDistillError

if TYPE_CHECKING:
    from kgdistill.predict import Predictor

__all__ = ["RunSpec", "check_run", "load_runs", "parse_runs"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class RunSpec:
    """A run to serve: its name in URLs and its folder (or checkpoint file)."""

    name: str
    path: str


def parse_runs(args: tuple[str, ...] | list[str]) -> list[RunSpec]:
    """``PATH`` or ``NAME=PATH`` arguments -> :class:`RunSpec` s; names must be unique and URL-safe."""
    specs = []
    for arg in args:
        name, sep, path = arg.partition("=")
        if not sep or Path(arg).exists():
            path = arg
            p = Path(arg.rstrip("/"))
            name = p.stem if p.is_file() else p.name
        if not _NAME.match(name):
            raise KGDistillError(
                f"run name '{name}' (from '{arg}') is not URL-safe: use letters, digits, '.', '_', '-' "
                "(give RUN as NAME=PATH)"
            )
        specs.append(RunSpec(name, path))
    seen: dict[str, str] = {}
    for s in specs:
        if s.name in seen:
            raise KGDistillError(
                f"two runs are named '{s.name}' ({seen[s.name]} and {s.path}); give one as NAME=PATH"
            )
        seen[s.name] = s.path
    if not specs:
        raise KGDistillError("give at least one RUN folder to serve")
    return specs


def check_run(spec: RunSpec) -> None:
    """Raise one clear error when ``spec`` cannot be served (reads only the checkpoint's header and tensors)."""
    from kgdistill.checkpoint import load_checkpoint

    p = Path(spec.path)
    where = f"cannot serve '{spec.name}' ({spec.path})"
    if not p.exists():
        raise KGDistillError(f"{where}: no such run folder or checkpoint")
    if is_onnx(p):
        _load_onnx(spec)
        return
    if p.is_dir() and not (p / "best.safetensors").is_file():
        if (p / "last.safetensors").is_file():
            why = "an unfinished run: it has last.safetensors but no best.safetensors yet"
        elif (p / "config.yaml").is_file():
            why = "an incomplete run folder: config.yaml but no checkpoint (best.safetensors)"
        else:
            why = "not a run folder (no best.safetensors)"
        raise KGDistillError(f"{where}: {why}")
    try:
        load_checkpoint(p)
    except KGDistillError as e:
        raise KGDistillError(f"{where}: {e}") from None


def load_runs(
    specs: list[RunSpec],
    *,
    device: str = "auto",
    known_facts: bool = True,
    data_root: str | None = None,
) -> dict[str, Predictor]:
    """Check then load every run (name -> :class:`~kgdistill.predict.Predictor`), in order."""
    from kgdistill.predict import Predictor

    for spec in specs:
        check_run(spec)
    out = {}
    for spec in specs:
        if is_onnx(Path(spec.path)):
            out[spec.name] = _load_onnx(spec)
            continue
        try:
            out[spec.name] = Predictor.load(
                spec.path, device=device, known_facts=known_facts, data_root=data_root
            )
        except KGDistillError as e:
            raise KGDistillError(f"cannot serve '{spec.name}' ({spec.path}): {e}") from None
    return out


def is_onnx(path: Path) -> bool:
    """Whether ``path`` is an exported ONNX graph (served through ONNX Runtime)."""
    return path.is_file() and path.suffix.lower() == ".onnx"


def _load_onnx(spec: RunSpec) -> Predictor:
    """An ONNX export as a :class:`~kgdistill.predict.Predictor` (one clear error when it cannot be served)."""
    try:
        from kgdistill.export.onnx import OnnxScorer

        scorer = OnnxScorer(spec.path)
        if scorer.is_topk:
            raise KGDistillError("a top-k graph; serve an export of all scores (without --topk)")
        predictor = scorer.predictor()
    except ImportError as e:
        raise KGDistillError(
            f"cannot serve '{spec.name}' ({spec.path}): ONNX Runtime is not installed ({e}; "
            'pip install "kgdistill[export]")'
        ) from None
    except KGDistillError as e:
        raise KGDistillError(f"cannot serve '{spec.name}' ({spec.path}): {e}") from None
    return predictor
