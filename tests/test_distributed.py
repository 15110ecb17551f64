"""torchrun (kgdistill.dist): sharding logic in one process (fast), and real 2-process runs on CPU with gloo (slow).

The multi-process tests start ``python -m torch.distributed.run --nproc-per-node 2`` on a free port of
127.0.0.1, as a user runs ``torchrun``; they need 2 CPU cores and no GPU.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from kgdistill import api, dist
from kgdistill.config import parse_config
from kgdistill.data import build_kg, read_hyte
from kgdistill.data.batching import both_directions, sample_candidates
from kgdistill.errors import ConfigError
from kgdistill.models.base import Vocab
from kgdistill.models.zoo import build_model
from kgdistill.objective import Objective

FIXTURES = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------------------------------- one process
@pytest.mark.parametrize("n", [1, 7, 64, 100, 1001])
@pytest.mark.parametrize("chunk", [1, 16, 33])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_spans_cover_the_queries_in_whole_chunks(n: int, chunk: int, size: int) -> None:
    spans = [dist.span(n, chunk, rank, size) for rank in range(size)]
    assert spans[0][0] == 0 and spans[-1][1] == n
    for (_, hi), (lo, _) in itertools.pairwise(spans):
        assert hi == lo  # contiguous and disjoint
    for lo, hi in spans:
        assert lo <= hi and lo % chunk == 0 and (hi % chunk == 0 or hi == n)
    counts = [-(-(hi - lo) // chunk) for lo, hi in spans]
    assert max(counts) - min(counts) <= 1  # the chunks spread evenly


def test_batch_rows_split_a_global_batch_like_distributed_sampler() -> None:
    q = torch.arange(30).view(10, 3)
    cand = torch.arange(50).view(10, 5)
    parts = [dist.batch_rows(q, cand, None, rank, 3) for rank in range(3)]
    assert [p[3] for p in parts] == [0.4, 0.3, 0.3]
    assert torch.equal(torch.cat([p[0] for p in parts]).sort(0).values, q)
    assert torch.equal(parts[1][0], q[1::3]) and torch.equal(parts[1][1], cand[1::3])
    # a last batch smaller than the world: the rank without rows runs row 0 with weight 0
    q2, _, _, share = dist.batch_rows(q[:2], None, None, 2, 3)
    assert share == 0.0 and torch.equal(q2, q[:1])
    assert dist.batch_rows(q, cand, None) == (q, cand, None, 1.0)  # one process: untouched


def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_rank_weights_give_the_global_batch_gradient() -> None:
    """What DDP computes (the mean over ranks of each rank's weighted gradient) is the one-process gradient of the
    global batch, for an uneven batch and sampled negatives; checked without processes by summing the ranks."""
    kg = build_kg(read_hyte(FIXTURES / "wikidata12k-mini"))
    torch.manual_seed(0)
    model = build_model(
        {"name": "tntcomplex", "dim": 8}, Vocab(kg.num_entities, kg.num_relations, kg.time.labels)
    )
    objective = Objective.build(
        [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.01}], candidates=True
    )
    step = dist.LossStep(model, objective, {}, {})
    q = both_directions(kg.splits["train"], kg.num_relations)[:13]
    cand = sample_candidates(q, kg.num_entities, 5, torch.Generator().manual_seed(1))
    step(q, cand, None)[0].backward()
    want = _grads(model)
    for size in (2, 3, 4):
        model.zero_grad(set_to_none=True)
        for rank in range(size):
            qr, cr, _, share = dist.batch_rows(q, cand, None, rank, size)
            # each rank backpropagates loss * share * size; DDP's all-reduce takes the mean (/ size)
            (step(qr, cr, None)[0] * share).backward()
        for a, b in zip(want, _grads(model), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_one_process_needs_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist.init_from_env() == dist.World() and not dist.world().active
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc-per-node 1: a plain single process
    assert dist.init_from_env() == dist.World()
    assert dist.is_main() and dist.broadcast("x") == "x"
    t = torch.arange(4.0)
    assert dist.gather_span(t, 0, 4) is t and dist.span(10, 3) == (0, 10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without GPUs")
def test_nccl_without_gpus_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv(dist.BACKEND_ENV, "nccl")
    with pytest.raises(ConfigError, match=r"NCCL.*no CUDA device"):
        dist.init_from_env()
    monkeypatch.setenv(dist.BACKEND_ENV, "mpi")
    with pytest.raises(ConfigError, match=r"gloo.*nccl"):
        dist.init_from_env()
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ConfigError, match="RANK=5"):
        dist.init_from_env()


def test_pinned_gpu_cpu_under_nccl_and_small_batches_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with monkeypatch.context() as m:
        m.setattr(dist, "world", lambda: dist.World(rank=0, size=4))
        with pytest.raises(ConfigError, match="every rank on one GPU"):
            dist.local_device(torch.device("cuda", 1))
        m.setattr(dist.tdist, "get_backend", lambda: "gloo")
        assert dist.local_device(torch.device("cpu")) == torch.device("cpu")
        m.setattr(dist.tdist, "get_backend", lambda: "nccl")
        with pytest.raises(ConfigError, match="GPU tensors only"):
            dist.local_device(torch.device("cpu"))
    # the training loop's check, before any collective: 3 queries a step cannot feed 4 processes
    monkeypatch.setattr(dist, "init_from_env", lambda: dist.World(rank=0, size=4))
    cfg = parse_config({**_tiny_cfg(), "train": {"batch_size": 3, "progress": False}})
    with pytest.raises(ConfigError, match=r"train.batch_size.*4 processes"):
        api.train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------- processes
def _tiny_cfg(**over: Any) -> dict[str, Any]:
    """Two stages on the Wikidata12k fixture (576 training queries), Adagrad then a lower learning rate."""
    cfg: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "data": {"name": str(FIXTURES / "wikidata12k-mini"), "time": {"granularity": "year"}},
        "model": {"name": "tntcomplex", "dim": 8},
        "stages": [
            {"epochs": 3, "objective": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.01}]},
            {"epochs": 3, "lr": 0.05, "objective": [{"loss": "supervised_ce"}]},
        ],
        "train": {
            "batch_size": 16,
            "optimizer": "adagrad",
            "lr": 0.1,
            "eval_every": 2,
            "patience": 0,
            "progress": False,
        },
    }
    cfg.update(over)
    return cfg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _torchrun(nproc: int, *args: str) -> subprocess.Popen[bytes]:
    """``torchrun --nproc-per-node nproc ARGS`` (``nproc`` 1: a plain process, no torchrun)."""
    launch = [
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
    ]
    return subprocess.Popen(
        [sys.executable, *(launch if nproc > 1 else []), *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _ok(proc: subprocess.Popen[bytes], timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-4000:]
    return out.decode()


def _log(run: Path) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (run / "log.jsonl").read_text().splitlines()
    ]


def _epochs_logged(run: Path) -> int:
    log = run / "log.jsonl"
    return log.read_text().count('"event": "epoch"') if log.exists() else 0


_EVAL_SCRIPT = """
import json, sys
from kgdistill import api, dist
out = {}
for ties in ("realistic", "optimistic", "pessimistic"):
    m = api.evaluate_run(sys.argv[1], split="test", overrides={"ties": ties}, progress=False)
    out[ties] = m.sides
out["rerank"] = api.evaluate_run(sys.argv[1], retriever=sys.argv[1], rerank_k=20, progress=False).sides
if dist.is_main():
    print(json.dumps(out))
"""


@pytest.mark.slow
def test_two_processes_evaluate_yago11k_exactly_as_one(tmp_path: Path) -> None:
    """The full YAGO11k test split (4,000 queries) ranked by 2 gloo ranks: every metric equal to the last bit,
    in all three tie modes and re-ranking; a third of the entities share one score, so realistic ranks end in
    .5."""
    cfg = parse_config(
        {
            "data": {"name": "yago11k"},
            "model": {"name": "distmult", "dim": 8},
            "stages": [{"epochs": 1}],
            "train": {"batch_size": 2000, "progress": False},
        }
    )
    run = api.train(cfg, out=tmp_path / "run").run_dir
    best = run / "best.safetensors"
    tensors = load_file(str(best))
    from safetensors import safe_open

    with safe_open(str(best), framework="pt") as fh:
        header = fh.metadata()
    table = tensors["model.entities.weight"]
    table[::3] = (
        0.0  # every third entity scores 0 for every query: many ties, some with the true answer
    )
    save_file(tensors, str(best), metadata=header)
    script = tmp_path / "eval.py"
    script.write_text(_EVAL_SCRIPT)
    one = json.loads(_ok(_torchrun(1, str(script), str(run))))
    two = json.loads(_ok(_torchrun(2, str(script), str(run))).strip().splitlines()[-1])
    assert one == two
    assert one["realistic"]["both"]["mr"] != one["optimistic"]["both"]["mr"]  # ties did occur


@pytest.mark.slow
def test_train_two_processes_kill_one_rank_and_resume(tmp_path: Path) -> None:
    """One config trained by 1 process and by 2; a 2-process run whose rank 1 is killed with SIGKILL in epoch 3,
    resumed from its last checkpoint by 2 processes (the same run as the uninterrupted one, bit for bit) and by
    1 process (another world size: within the tolerance of 1 vs 2 processes).

    Tolerance (1 vs 2 processes): both see the same global batches (same permutation, same negatives), so the
    gradient differs only in float summation order (two half-batch means instead of one mean, then the
    all-reduce): about 1e-7 relative per step, grown by 6 epochs of training. Losses must agree to 1e-4
    relative and validation and test metrics to 0.01 absolute (observed: 5e-7 and equal metrics).
    """
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_tiny_cfg()))
    cli = ["-m", "kgdistill", "-q", "train", str(config)]
    ref1, ref2 = tmp_path / "ref1", tmp_path / "ref2"
    _ok(_torchrun(1, *cli, "--out", str(ref1)))
    _ok(_torchrun(2, *cli, "--out", str(ref2)))
    assert _close(ref1, ref2)

    run = tmp_path / "killed"
    proc = _torchrun(2, *cli, "--out", str(run))
    import psutil

    deadline = time.time() + 300
    while _epochs_logged(run) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    workers = psutil.Process(proc.pid).children()
    assert proc.poll() is None and len(workers) == 2, "the run finished before it could be killed"
    os.kill(workers[-1].pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0  # torchrun stops the other rank and fails
    assert not (run / "metrics.json").exists() and (run / "last.safetensors").is_file()
    again = tmp_path / "killed-1"
    shutil.copytree(run, again)

    _ok(_torchrun(2, "-m", "kgdistill", "-q", "train", "--resume", str(run)))
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (ref2, run))
    assert a["sides"] == b["sides"] and _log(ref2) == _log(run)
    wa, wb = load_file(str(ref2 / "last.safetensors")), load_file(str(run / "last.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa if k.startswith(("model.", "optim.")))

    _ok(_torchrun(1, "-m", "kgdistill", "-q", "train", "--resume", str(again)))  # 2 -> 1 process
    assert _close(ref2, again)


def _close(a: Path, b: Path, loss_rel: float = 1e-4) -> bool:
    """Two runs of one config agree within the tolerance of 1 vs 2 processes (see the tests): the same events,
    every epoch's loss to ``loss_rel`` relative, validation and test metrics to 0.01 absolute."""
    la, lb = _log(a), _log(b)
    assert [(e["event"], e["epoch"]) for e in la] == [(e["event"], e["epoch"]) for e in lb]
    for x, y in zip(la, lb, strict=True):
        if "loss" in x:
            assert y["loss"] == pytest.approx(x["loss"], rel=loss_rel), (x, y)
        if "mrr" in x:
            assert y["mrr"] == pytest.approx(x["mrr"], abs=0.01), (x, y)
    ma, mb = (json.loads((r / "metrics.json").read_text())["sides"] for r in (a, b))
    for side in ma:
        for k, v in ma[side].items():
            if k != "mr":
                assert mb[side][k] == pytest.approx(v, abs=0.01), (side, k)
    return True


@pytest.mark.slow
def test_distill_two_processes_each_rank_reads_its_teachers(tmp_path: Path) -> None:
    """A student distilled from a checkpoint teacher and a top-k cache of it, with 20 sampled negatives and
    gradient accumulation: every rank loads the checkpoint and reads the cache itself, and the 2-process run
    agrees with the 1-process one: losses to 1e-3 relative (observed 5e-5), metrics to 0.01. Looser than plain
    training because the top-k cache term averages over the rows the cache covers, a count each rank takes over
    its own rows (a batch statistic: observed 1e-3 relative in that term)."""
    teacher = api.train(
        parse_config(_tiny_cfg(stages=[{"epochs": 2}])), out=tmp_path / "teacher"
    ).run_dir
    cache = api.cache(teacher, tmp_path / "cache.safetensors", k=16, progress=False)
    cfg = _tiny_cfg(model={"name": "ta_distmult", "dim": 8})
    cfg["teachers"] = {
        "kge": {"name": "checkpoint", "path": str(teacher)},
        "top": {"name": "cache", "path": str(cache)},
    }
    cfg["stages"] = [
        {
            "epochs": 3,
            "objective": [
                {"loss": "supervised_ce"},
                {"loss": "kd_kl", "teacher": "kge"},
                {"loss": "kd_kl", "teacher": "top", "weight": 0.5},
            ],
        }
    ]
    cfg["train"] = {**cfg["train"], "negatives": 20, "accumulate": 2, "optimizer": "adam"}
    cfg["train"]["lr"] = 0.01
    config = tmp_path / "student.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cli = ["-m", "kgdistill", "-q", "distill", str(config)]
    _ok(_torchrun(1, *cli, "--out", str(tmp_path / "one")))
    printed = _ok(_torchrun(2, *cli, "--out", str(tmp_path / "two")))
    assert printed.count("vs teacher 'kge'") == 1  # rank 0 alone prints
    assert _close(tmp_path / "one", tmp_path / "two", loss_rel=1e-3)
    retention = json.loads((tmp_path / "two" / "metrics.json").read_text())["retention"]
    assert set(retention) == {"kge"}  # the teacher's own evaluation, shared by the ranks


def test_memory_model_of_the_scaling_benchmark() -> None:
    """benchmarks/distributed.py's bytes per rank: replication adds DDP's buckets, sharding divides the rows."""
    from distributed import WIKIDATA5M_ENTITIES, model_bytes

    one = model_bytes(WIKIDATA5M_ENTITIES, 128, optimizer="adam")
    assert one["table"] == WIKIDATA5M_ENTITIES * 128 * 4 and one["optimizer"] == 2 * one["table"]
    assert one["total"] == 4 * one["table"]  # table, gradient, 2 Adam states
    ddp = model_bytes(WIKIDATA5M_ENTITIES, 128, optimizer="adam", ranks=8)
    assert ddp["total"] == 5 * one["table"]  # + DDP's gradient buckets, on every rank
    sharded = model_bytes(WIKIDATA5M_ENTITIES, 128, optimizer="adam", ranks=8, sharded=True)
    assert sharded["total"] == pytest.approx(one["total"] / 8, rel=1e-6)
    bf16 = model_bytes(WIKIDATA5M_ENTITIES, 128, precision=2, optimizer="adagrad")
    assert bf16["total"] == 3 * WIKIDATA5M_ENTITIES * 128 * 2
