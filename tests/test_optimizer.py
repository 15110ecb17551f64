"""The optimisers: PyTorch's fused kernels where they exist (``train.fused_optimizer``), equal to the unfused path up
to float rounding, and a run trained either way learns the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgdistill import api
from kgdistill.config import parse_config
from kgdistill.train import _FUSED_DEVICES, _can_fuse, make_optimizer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", sorted(_FUSED_DEVICES))
def test_fused_equals_unfused_up_to_rounding(name: str) -> None:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(300, 16))
    b = torch.nn.Parameter(a.detach().clone())
    fused = make_optimizer([a], name, 0.05, 0.01)
    plain = make_optimizer([b], name, 0.05, 0.01, fused=False)
    assert fused.defaults["fused"] is True and not plain.defaults.get("fused")
    for _ in range(10):
        g = torch.randn(300, 16)
        a.grad, b.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_parameters_without_a_fused_kernel_take_the_unfused_path() -> None:
    meta = torch.nn.Parameter(torch.empty(10, 4, device="meta"))  # no fused kernel for this device
    assert not make_optimizer([meta], "adam", 0.1, 0.0).defaults.get("fused")
    ints = torch.zeros(3, dtype=torch.long)  # not a floating tensor
    assert not _can_fuse([torch.nn.Parameter(torch.zeros(3)), ints], "sgd")
    assert _can_fuse([{"params": [torch.nn.Parameter(torch.zeros(3))]}], "adagrad")


def _cfg(fused: bool) -> object:
    return parse_config(
        {
            "seed": 1,
            "data": {"name": str(FIXTURES / "yago11k-mini")},
            "model": {"name": "distmult", "dim": 16},
            "stages": [{"epochs": 4}],
            "train": {"batch_size": 256, "lr": 0.1, "fused_optimizer": fused, "progress": False},
        }
    )


def test_a_run_learns_the_same_with_and_without_the_fused_kernel(tmp_path: Path) -> None:
    fused = api.train(_cfg(True), out=tmp_path / "fused").metrics
    plain = api.train(_cfg(False), out=tmp_path / "plain").metrics
    assert fused.mrr == pytest.approx(plain.mrr, abs=2e-3)
    again = api.train(_cfg(True), out=tmp_path / "again").metrics
    assert again.sides == fused.sides  # deterministic: the fused kernel is no source of noise
