"""Config validation: errors name the key; overrides; every shipped config is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kgdistill import api
from kgdistill.config import apply_overrides, load_config, parse_config
from kgdistill.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted([*(REPO / "configs").rglob("*.yaml"), REPO / "src/kgdistill/configs/demo.yaml"])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"model": {"name": "distmult"}, "train": {"lrr": 1}},
            r"config key 'train\.lrr' does not exist \(did you mean 'lr'\?\)",
        ),
        (
            {"model": {"name": "distmult"}, "train": {"lr": "fast"}},
            r"config key 'train\.lr': Input should be a valid number",
        ),
        (
            {"model": {"name": "distmult"}, "train": {"lr": -1}},
            r"config key 'train\.lr': Input should be greater than 0",
        ),
        (
            {"model": {"name": "distmult"}, "stages": [{"epoch": 3}]},
            r"config key 'stages\.0\.epoch' does not exist",
        ),
        (
            {"model": {"name": "distmult"}, "data": {"time": {"interval_mode": "middle"}}},
            r"data\.time\.interval_mode",
        ),
        ({"train": {}}, r"config key 'model' is missing"),
        (
            {
                "model": {"name": "fitnet"},
                "stages": [{"objective": [{"loss": "fitnet", True: ["h"]}]}],
            },
            r"quote the key",
        ),
        ({"model": {"name": "distmult"}, "eval": {"ties": "random"}}, r"config key 'eval\.ties'"),
        (
            {"model": {"name": "distmult"}, "eval": {"time_filter": "interval"}},
            r"config key 'eval\.time_filter': Input should be 'validity' or 'timestamp'",
        ),
    ],
)
def test_bad_config_names_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_overrides_coerce_and_index_lists() -> None:
    raw = {"model": {"name": "distmult"}, "stages": [{"epochs": 5}, {"epochs": 7}]}
    apply_overrides(
        raw,
        ["train.lr=3e-4", "stages.1.epochs=10", "model.dim=32", "data.time.interval_mode=split"],
    )
    cfg = parse_config(raw)
    assert cfg.train.lr == pytest.approx(3e-4)
    assert [s.epochs for s in cfg.stages] == [5, 10]
    assert cfg.model.kwargs() == {"dim": 32}
    assert cfg.data.time.interval_mode == "split"


def test_time_filter_round_trips() -> None:
    """``eval.time_filter`` defaults to ``validity``; ``timestamp`` survives --set, the written config and its
    reading back (what ``kgdistill evaluate RUN`` reads)."""
    assert parse_config({"model": {"name": "distmult"}}).eval.time_filter == "validity"
    raw = apply_overrides({"model": {"name": "ta_distmult"}}, ["eval.time_filter=timestamp"])
    cfg = parse_config(raw)
    assert cfg.eval.time_filter == "timestamp"
    written = yaml.safe_dump(cfg.model_dump(mode="json"))
    assert parse_config(yaml.safe_load(written)) == cfg


@pytest.mark.parametrize("bad", ["train.lr", "stages.5.epochs=1", "stages.x.epochs=1", "seed.x=1"])
def test_bad_overrides(bad: str) -> None:
    raw = {"model": {"name": "distmult"}, "stages": [{"epochs": 1}], "seed": 3}
    with pytest.raises(ConfigError):
        apply_overrides(raw, [bad])


def test_load_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listy)


def test_model_and_loss_keys_checked_against_registries() -> None:
    cfg = parse_config({"model": {"name": "distmult", "dimm": 3}})
    with pytest.raises(ConfigError, match=r"config key 'model\.dimm' .*did you mean 'dim'"):
        api.check(cfg)
    # a feature option of the model section (checked elsewhere) is named and suggested like the model's own keys
    cfg = parse_config({"model": {"name": "distmult", "histroy": True}})
    with pytest.raises(
        ConfigError, match=r"'model\.histroy' .*did you mean 'history'.*known keys: .*history"
    ):
        api.check(cfg)
    cfg = parse_config({"model": {"name": "distmul"}})
    with pytest.raises(ConfigError, match=r"unknown model 'distmul'\. Did you mean 'distmult'"):
        api.check(cfg)
    cfg = parse_config(
        {
            "model": {"name": "distmult"},
            "stages": [{"objective": [{"loss": "supervised_ce", "smoothing": 0.1}]}],
        }
    )
    with pytest.raises(ConfigError, match=r"stages\.0\.objective\.0\.smoothing"):
        api.check(cfg)


def test_temporal_model_on_static_data_is_refused(tiny_kg) -> None:
    cfg = parse_config({"model": {"name": "ttranse"}})
    with pytest.raises(ConfigError, match="temporal but dataset"):
        api.check(cfg, tiny_kg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg, _ = load_config(path)
    api.check(
        cfg, teacher_fields={name: frozenset({"scores", "h", "r", "t"}) for name in cfg.teachers}
    )
    assert yaml.safe_load(path.read_text())  # not empty


def test_temporal_kd_spec_composes_valid_configs(tmp_path: Path) -> None:
    """Every run the temporal-kd benchmark (benchmarks/temporal_kd.py, its default spec) would start is a valid
    config (checked before any training)."""
    from _kd_spec import _configs, _spec

    spec = _spec(None)
    teachers = {"kge": tmp_path / "teacher", "llm": tmp_path / "llm_scorer"}
    for student in spec["students"]:
        for method in spec["methods"]:
            raw = _configs(spec, "yago11k", None, teachers, student, method, 0, None)
            cfg = parse_config(raw)
            api.check(cfg, teacher_fields=dict.fromkeys(cfg.teachers))
            for stage in cfg.stages:
                terms = [t.loss for t in stage.objective]
                assert terms[0] == "supervised_ce" and (len(terms) > 1) == (method != "none")
            assert sum(s.epochs for s in cfg.stages) == spec["students"][student]["epochs"]
            used = {t.teacher for s in cfg.stages for t in s.objective if t.teacher}
            assert set(cfg.teachers) == used
    # the two-stage method: teacher alignment first, then the LLM terms (alpha L2 = Huber, beta L3 = MSE)
    raw = _configs(spec, "yago11k", None, teachers, "ttranse", "ours", 0, None)
    first, second = ({(t["loss"], t.get("teacher")) for t in s["objective"]} for s in raw["stages"])
    assert ("huber", "llm") not in first and {("huber", "llm"), ("mse", "llm")} <= second
    assert {("fitnet", "kge"), ("kd_kl", "kge")} <= first & second
