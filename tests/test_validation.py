"""Config values are validated by type and range before any data is read: every mistake is one line naming the
key, exit status 2 on the command line. Parametrised over the registries (models, losses, teachers, encoders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kgdistill.cli import cli
from kgdistill.config import apply_overrides
from kgdistill.distill.teachers import TEACHERS
from kgdistill.errors import ConfigError
from kgdistill.llm.encoders import ENCODERS
from kgdistill.losses import LOSSES
from kgdistill.models import MODELS, Vocab
from kgdistill.objective import Objective
from kgdistill.registry import check_kwargs

DEMO = Path(__file__).resolve().parents[1] / "src" / "kgdistill" / "configs" / "demo.yaml"
VOCAB = Vocab(num_entities=7, num_relations=3, time_labels=("1990", "1991..1995"))


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dim=abc", "config key 'model.dim': Input should be a valid integer"),
        ("model.dim=0", "config key 'model.dim': Input should be greater than 0 (got 0)"),
        ("model.dim=-3", "config key 'model.dim': Input should be greater than 0"),
        ("model.init_scale=[1]", "config key 'model.init_scale'"),
        ("stages.0.objective.1.weight=abc", "config key 'stages.0.objective.1.weight'"),
        ("stages.0.objective.0.label_smoothing=2", "label_smoothing': Input should be less than 1"),
        ("stages.0.epochs=-1", "config key 'stages.0.epochs'"),
        ("train.batch_size=0", "config key 'train.batch_size'"),
        ("eval.ties=median", "config key 'eval.ties': Input should be 'optimistic', 'pessimistic'"),
        ("teachers.t.name=checkpoint", "config key 'teachers.t.path' is missing"),
        (
            "train.negative_sampling=shared",
            "config key 'train.negative_sampling': Value error, shared",
        ),
    ],
)
def test_train_rejects_bad_values_in_one_line(override: str, message: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    code, out = _invoke("train", str(DEMO), "--set", override, "--out", str(out_dir))
    assert code == 2, out
    assert message in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert not out_dir.exists()  # nothing was started


def test_teacher_values_are_checked_before_the_data(tmp_path: Path) -> None:
    code, out = _invoke(
        "distill",
        str(DEMO),
        "--set",
        "teachers={t: {name: checkpoint, path: nowhere, min_coverage: 2}}",
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 2 and "config key 'teachers.t.min_coverage'" in out, out


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_refuses_a_zero_or_text_dim(name: str) -> None:
    for bad in (0, "abc"):
        with pytest.raises(ConfigError, match=r"config key 'model\.dim'"):
            MODELS.build({"name": name, "dim": bad}, where="model", vocab=VOCAB, features=None)


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_refuses_an_unknown_key_and_validates_types(name: str) -> None:
    teacher = "t" if LOSSES.get(name).requires_teacher else None
    spec: dict[str, Any] = {"loss": name, "no_such_option": 1}
    if teacher:
        spec["teacher"] = teacher
    with pytest.raises(ConfigError, match=r"objective\.0\.no_such_option"):
        Objective.build([spec], teachers={"t": None}, candidates=True)


@pytest.mark.parametrize(
    ("name", "kwargs", "key"),
    [
        ("kd_kl", {"temperature": 0}, "temperature"),
        ("kd_kl", {"temperature": "hot"}, "temperature"),
        ("huber", {"compare": "logits"}, "compare"),
        ("rkd", {"max_samples": 2}, "max_samples"),
        ("network", {"neighbours": 1}, "neighbours"),
        ("negative_sampling", {"form": "hinge"}, "form"),
    ],
)
def test_loss_values_name_the_key(name: str, kwargs: dict[str, Any], key: str) -> None:
    spec = {"loss": name, **kwargs}
    if LOSSES.get(name).requires_teacher:
        spec["teacher"] = "t"
    with pytest.raises(ConfigError, match=rf"'stages\.0\.objective\.0\.{key}'"):
        Objective.build([spec], teachers={"t": None}, candidates=True, where="stages.0.objective")


@pytest.mark.parametrize("name", TEACHERS.names())
def test_every_teacher_validates_its_keys(name: str) -> None:
    with pytest.raises(ConfigError, match=r"teachers\.x\.colour"):
        check_kwargs(TEACHERS.get(name), {"colour": 1}, where="teachers.x", context={"kg": None})


@pytest.mark.parametrize(
    ("name", "kwargs", "key"),
    [
        (
            "openai",
            {"base_url": "http://127.0.0.1:9/v1", "model": "m", "batch_size": 0},
            "batch_size",
        ),
        ("openai", {"base_url": "http://127.0.0.1:9/v1", "model": "m", "timeout": -1}, "timeout"),
        (
            "openai",
            {"base_url": "http://127.0.0.1:9/v1", "model": "m", "concurrency": "x"},
            "concurrency",
        ),
        ("hf", {"path": "/x", "max_length": 0}, "max_length"),
        ("sentence_transformers", {"batch_size": "many"}, "batch_size"),
    ],
)
def test_encoder_values_name_the_key(name: str, kwargs: dict[str, Any], key: str) -> None:
    assert name in ENCODERS
    with pytest.raises(ConfigError, match=rf"'model\.encoder\.{key}'"):
        ENCODERS.build({"name": name, **kwargs}, where="model.encoder")


def test_values_are_coerced_like_yaml_would() -> None:
    got = check_kwargs(MODELS.get("distmult"), {"dim": "16"}, where="model", context={"vocab": 1})
    assert got == {"dim": 16}


def test_one_override_parser_for_every_verb() -> None:
    raw = apply_overrides(
        {"stages": [{"epochs": 3}]}, ["stages.0.epochs=5", "eval.ties=optimistic"]
    )
    assert raw == {"stages": [{"epochs": 5}], "eval": {"ties": "optimistic"}}
    assert apply_overrides({"name": "openai"}, ["batch_size=8"]) == {
        "name": "openai",
        "batch_size": 8,
    }
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["eval.ties"])
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides({"stages": []}, ["stages.3.epochs=1"])


@pytest.mark.parametrize(
    "args",
    [
        ["predict", ".", "--relation", "r", "--head", "h", "-k", "0"],
        ["cache", ".", "--out", "x.safetensors", "-k", "-5"],
        ["demo", "--epochs", "0"],
    ],
)
def test_numeric_options_are_range_checked(args: list[str]) -> None:
    code, out = _invoke(*args)
    assert code == 2, out
    assert "not in the range" in out, out
