"""``train.compile``: the training step under ``torch.compile`` learns what the eager step learns (equal up to float
rounding), its run folder is an ordinary one, and a wrong mode is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import parse_config
from kgdistill.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"

#: (model, fixture): static and temporal interactions, a time-aware LSTM relation encoder among them
CASES = [
    ("complex", "wn18rr-mini"),
    ("rotate", "wn18rr-mini"),
    ("tntcomplex", "yago11k-mini"),
    ("ta_distmult", "yago11k-mini"),
]


def _cfg(model: str, fixture: str, mode: str | None) -> object:
    return parse_config(
        {
            "seed": 0,
            "data": {"name": str(FIXTURES / fixture)},
            "model": {"name": model, "dim": 16},
            "stages": [
                {
                    "epochs": 2,
                    "objective": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.01}],
                }
            ],
            "train": {"batch_size": 256, "lr": 0.05, "compile": mode, "progress": False},
            "eval": {"split": "valid"},
        }
    )


@pytest.mark.slow
@pytest.mark.parametrize(("model", "fixture"), CASES)
def test_compiled_step_learns_what_the_eager_step_learns(
    tmp_path: Path, model: str, fixture: str
) -> None:
    eager = api.train(_cfg(model, fixture, None), out=tmp_path / "eager").metrics
    compiled = api.train(_cfg(model, fixture, "default"), out=tmp_path / "compiled").metrics
    assert compiled.mrr == pytest.approx(eager.mrr, abs=2e-3)
    assert compiled.mrr > 0
    # an ordinary checkpoint: the compiled wrapper leaves no trace in the weights' names
    ckpt = load_checkpoint(tmp_path / "compiled" / "best.safetensors")
    assert not any("_orig_mod" in k for k in ckpt.tensors)
    load_model(ckpt)


def test_the_mode_reaches_torch_compile_and_eager_compiles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast: ``torch.compile`` replaced by a recorder that returns the step unchanged."""
    import kgdistill.train as train_mod

    modes: list[str | None] = []

    def record(step: object, mode: str | None = None) -> object:
        modes.append(mode)
        return step

    monkeypatch.setattr(train_mod.torch, "compile", record)
    cfg = _cfg("distmult", "wn18rr-mini", "reduce-overhead")
    api.train(
        cfg.model_copy(update={"stages": [cfg.stages[0].model_copy(update={"epochs": 1})]}),
        out=tmp_path / "c",
    )
    assert modes == ["reduce-overhead"]
    api.train(_cfg("distmult", "wn18rr-mini", None), out=tmp_path / "e")
    assert modes == ["reduce-overhead"]  # eager: no call


def test_an_unknown_compile_mode_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.compile"):
        _cfg("complex", "wn18rr-mini", "fastest")


@pytest.mark.slow
def test_compiled_distillation_step_learns_what_the_eager_one_learns(tmp_path: Path) -> None:
    """The teacher's forward is inside the compiled step: BKD and FitNet against a trained ComplEx teacher."""
    api.train(_cfg("complex", "wn18rr-mini", None), out=tmp_path / "teacher")

    def student(mode: str | None) -> object:
        return parse_config(
            {
                "seed": 0,
                "data": {"name": str(FIXTURES / "wn18rr-mini")},
                "model": {"name": "distmult", "dim": 8},
                "teachers": {"kge": {"name": "checkpoint", "path": str(tmp_path / "teacher")}},
                "stages": [
                    {
                        "epochs": 2,
                        "objective": [
                            {"loss": "supervised_ce"},
                            {"loss": "kd_kl", "teacher": "kge", "temperature": 2.0},
                            {"loss": "fitnet", "teacher": "kge", "weight": 0.1, "fields": ["h"]},
                        ],
                    }
                ],
                "train": {"batch_size": 256, "lr": 0.05, "compile": mode, "progress": False},
                "eval": {"split": "valid"},
            }
        )

    eager = api.train(student(None), out=tmp_path / "eager").metrics
    compiled = api.train(student("default"), out=tmp_path / "compiled").metrics
    assert eager.mrr > 0.02  # it learned (chance: about 0.005 over these 1,567 entities)
    assert compiled.mrr == pytest.approx(eager.mrr, abs=2e-3)
