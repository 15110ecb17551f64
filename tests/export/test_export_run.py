"""``kgdistill export`` on a trained run: every format and dtype, the reports, quantisation costs, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from kgdistill import api
from kgdistill.cli import cli
from kgdistill.config import parse_config
from kgdistill.errors import KGDistillError
from kgdistill.export import OnnxScorer, TableScorer, TorchScriptScorer, export_run
from kgdistill.io import atomic_save_tensors, read_safetensors

FIXTURES = Path(__file__).parents[1] / "fixtures"

#: test MRR an fp16 / int8 export may lose against PyTorch (absolute, MRR as a fraction)
FP16_TOLERANCE = 0.002
INT8_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ComplEx rank 16, 5 epochs on a real FB15k-237 subset (a finished run)."""
    cfg = parse_config(
        {
            "data": {"name": str(FIXTURES / "fb15k237-mini")},
            "model": {"name": "complex", "dim": 16, "init_scale": 0.1},
            "stages": [{"epochs": 5}],
            "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 500, "progress": False},
        }
    )
    return api.train(cfg, out=tmp_path_factory.mktemp("export") / "run").run_dir


def _report(out: Path) -> dict:
    return json.loads(out.with_name(out.name + ".report.json").read_text())


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors-embeddings"])
def test_cli_export_fp32_round_trips_with_a_report(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"model.{fmt}"
    result = CliRunner().invoke(
        cli, ["export", str(run_dir), "--format", fmt, "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "max abs diff" in result.output and "test MRR" in result.output
    report = _report(out)
    assert report["format"] == fmt and report["dtype"] == "fp32"
    assert report["bytes"] == out.stat().st_size > 0
    assert report["check"]["max_abs_diff"] < 1e-4
    assert report["check"]["top10_agree_up_to_ties"] == 1.0
    assert report["check"]["top10_identical"] >= 0.95
    assert abs(report["test"]["mrr_cost"]) < 1e-6
    assert report["test"]["protocol"]["split"] == "test"
    scorer = {"onnx": OnnxScorer, "torchscript": TorchScriptScorer}.get(fmt, TableScorer)(out)
    assert scorer.metadata["model"]["name"] == "complex"
    assert len(scorer.metadata["id_maps"]["entity"]) == report["num_entities"]


@pytest.mark.parametrize("fmt", ["onnx", "safetensors-embeddings"])
@pytest.mark.parametrize(
    ("dtype", "tolerance"), [("fp16", FP16_TOLERANCE), ("int8", INT8_TOLERANCE)]
)
def test_lower_precision_is_smaller_and_costs_little_mrr(
    run_dir: Path, tmp_path: Path, fmt: str, dtype: str, tolerance: float
) -> None:
    full = export_run(run_dir, tmp_path / "fp32", format=fmt)  # type: ignore[arg-type]
    small = export_run(run_dir, tmp_path / dtype, format=fmt, dtype=dtype)  # type: ignore[arg-type]
    saved = (full["bytes"] - small["bytes"]) / full["pytorch_parameter_bytes"]
    assert saved > (0.45 if dtype == "fp16" else 0.6)  # of the float32 weights (+ labels, scales)
    assert small["test"]["mrr_cost"] <= tolerance
    assert 0 < small["check"]["max_abs_diff"] < 0.5
    assert small["check"]["top10_agree_up_to_ties"] > 0.5


def test_topk_graph_gives_values_and_ids(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "top5.onnx"
    report = export_run(run_dir, out, format="onnx", topk=5)
    assert report["outputs"] == {"values": ["batch", 5], "ids": ["batch", 5]}
    assert report["check"]["top10_agree_up_to_ties"] == 1.0
    scorer = OnnxScorer(out)
    values, ids = scorer.topk(torch.tensor([[0, 1, 0], [2, 0, 0], [3, 1, 0]]))
    assert values.shape == ids.shape == (3, 5) and ids.dtype == torch.int64
    assert bool((values[:, :-1] >= values[:, 1:]).all())
    with pytest.raises(KGDistillError, match="top-k graph"):
        scorer.score_all(torch.tensor([[0, 1, 0]]))


def test_bad_runs_are_one_clear_error(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()

    def export(path: Path, *extra: str) -> tuple[int, str]:
        out = tmp_path / "x.onnx"
        result = runner.invoke(
            cli, ["export", str(path), "--format", "onnx", "--out", str(out), *extra]
        )
        return result.exit_code, result.output

    code, output = export(tmp_path / "nowhere")
    assert code == 2 and "no run or checkpoint at" in output
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(run_dir / "last.safetensors", unfinished / "last.safetensors")
    code, output = export(unfinished)
    assert code == 2 and "best.safetensors is missing" in output and "--resume" in output
    shutil.copy(run_dir / "best.safetensors", unfinished / "best.safetensors")
    code, output = export(unfinished)
    assert code == 2 and "not finished (no metrics.json)" in output
    header, tensors = read_safetensors(run_dir / "best.safetensors", "checkpoint")
    meta = json.loads(header["kgdistill"])
    future = tmp_path / "future.safetensors"
    atomic_save_tensors(future, tensors, {"kgdistill": json.dumps({**meta, "format": 99})})
    code, output = export(future)
    assert code == 2 and "checkpoint format 99 is not supported" in output
    code, output = export(run_dir, "--topk", "100000")
    assert code == 2 and "--topk must be between 1 and the" in output
    result = runner.invoke(
        cli,
        ["export", str(run_dir), "--format", "torchscript", "--dtype", "int8", "--out", "x.pt"],
    )
    assert result.exit_code == 2 and "torchscript exports float32 only" in result.output
    result = runner.invoke(
        cli,
        ["export", str(run_dir), "--format", "safetensors-embeddings", "--topk", "5", "--out", "x"],
    )
    assert result.exit_code == 2 and "--topk does not apply" in result.output
    assert not list(tmp_path.glob("x.onnx*"))


def test_onnx_scorer_serves_a_predictor(run_dir: Path, tmp_path: Path) -> None:
    """The exported graph answers label queries through the Predictor exactly as the run does."""
    from kgdistill.predict import Predictor

    out = tmp_path / "model.onnx"
    export_run(run_dir, out, format="onnx")
    exported, reference = OnnxScorer(out).predictor(), Predictor.load(run_dir, known_facts=False)
    queries = torch.tensor([[0, 1, 0], [5, 2, 0], [7, 30, 0]])
    s1, i1 = exported.topk_ids(queries, 5)
    s2, i2 = reference.topk_ids(queries, 5)
    assert torch.equal(i1, i2)
    torch.testing.assert_close(s1, s2)
    facts = queries.clone()
    facts[:, 2] = torch.tensor([3, 4, 5])
    torch.testing.assert_close(
        OnnxScorer(out).score_hrt(facts), reference.model.score_hrt(facts), rtol=1e-5, atol=1e-5
    )
