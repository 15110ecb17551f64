"""Alternating KG -> LM -> KG rounds on the FB15k-237 subset with a tiny DistMult and the tiny local encoder:
one record per round, facts added only from candidates (never an evaluated fact), the stopping rule, a rerun
that reuses the finished rounds, soft labels with the self-training control, and kill -9 in the middle of a
round."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

from kgdistill.data import KG, build_kg, read_static_names
from kgdistill.errors import ConfigError
from kgdistill.kglm.augment import hold_out, propose, propose_symmetric
from kgdistill.kglm.rounds import RoundsConfig, lm_baseline, run_rounds
from kgdistill.models import Vocab, build_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _cfg(encoder: Path, **extra: object) -> RoundsConfig:
    return RoundsConfig(
        data=str(FIXTURES / "fb15k237-mini"),
        hold_out=0.2,
        kge={
            "model": {"name": "distmult", "dim": 16, "init_scale": 0.1},
            "stages": [{"epochs": 2}],
            "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 500, "progress": False},
        },
        lm={
            "encoder": str(encoder),
            "max_length": 24,
            "num_labels": 6,
            "test_entities": 0.2,
            "epochs": 1,
            "batch_size": 64,
            "lr": 1e-3,
            "head_lr": 1e-2,
        },
        k=3,
        max_queries=150,
        threshold=None,
        top=25,
        **extra,
    )


@pytest.mark.slow
def test_rounds_add_facts_stop_and_resume(tiny_encoder_folder: Path, tmp_path: Path) -> None:
    records = run_rounds(_cfg(tiny_encoder_folder, max_rounds=2), tmp_path)
    assert [r["round"] for r in records] == [0, 1][: len(records)] and len(records) >= 1
    first = records[0]
    assert first["added"] == 25 and 0 < first["precision"] <= 1  # held-out facts come back
    assert 0 <= first["lm"]["test"]["accuracy"] <= 1 and first["kge"]["valid_mrr"] > 0
    kg = build_kg(read_static_names(FIXTURES / "fb15k237-mini"))
    evaluated = {tuple(f) for s in ("valid", "test") for f in kg.splits[s][:, :3].tolist()}
    added = {tuple(f) for f in records[-1]["added_total"]}
    assert not added & evaluated
    graph = build_kg(read_static_names(tmp_path / "graph-1"))
    assert len(graph.splits["train"]) == first["graph_facts"] + 25
    # a rerun reuses every finished round
    stamp = {p: p.stat().st_mtime for p in tmp_path.rglob("round.json")}
    again = run_rounds(_cfg(tiny_encoder_folder, max_rounds=2), tmp_path)
    assert [r["added"] for r in again] == [r["added"] for r in records]
    assert stamp == {p: p.stat().st_mtime for p in tmp_path.rglob("round.json")}
    assert json.loads((tmp_path / "rounds-config.json").read_text())["hold_out"] == 0.2
    # the one-sided baselines of the language model: plain, and the distillation form alone
    plain = lm_baseline(_cfg(tiny_encoder_folder), tmp_path)
    assert plain["task"]["examples"] == first["lm"]["task_examples"]
    assert plain["kge_known"] == 0 and 0 <= plain["test"]["accuracy"] <= 1
    fit = lm_baseline(
        _cfg(tiny_encoder_folder),
        tmp_path,
        kge_run=tmp_path / "round-0" / "kge",
        distill={"loss": "fitnet", "weight": 0.5},
    )
    assert fit["test"]["examples"] == plain["test"]["examples"]
    assert (tmp_path / "lm-fitnet.json").is_file()


def test_a_dataset_whose_ids_do_not_follow_the_labels_is_one_error(
    tiny_encoder_folder: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_encoder_folder)
    cfg.data = str(FIXTURES / "fb15k237n-mini")  # OpenKE ids, not in label order
    with pytest.raises(ConfigError, match="labelled triples"):
        run_rounds(cfg, tmp_path)


@pytest.mark.slow
def test_soft_labels_and_the_kge_control(tiny_encoder_folder: Path, tmp_path: Path) -> None:
    """``labels: soft``: round 1 trains on round 0's graph, the selected facts read as a soft_labels term;
    the candidates from both sources (the KGE's top-k and the symmetry rule)."""
    cfg = _cfg(
        tiny_encoder_folder,
        max_rounds=2,
        labels="soft",
        select_by="kge",
        soft_weight=0.5,
        source="kge+symmetric",
    )
    records = run_rounds(cfg, tmp_path)
    assert len(records) == 2 and records[0]["added"] == 25
    kg = build_kg(read_static_names(FIXTURES / "fb15k237-mini"))
    kept, _ = hold_out(kg, 0.2, seed=0)
    assert records[0]["candidates"] > len(propose_symmetric(kg, kept))  # both pools
    assert records[1]["graph_facts"] == records[0]["graph_facts"] + 25  # counted, not written
    assert 0 < min(records[0]["weights_total"]) <= max(records[0]["weights_total"]) <= 1
    run = yaml.safe_load((tmp_path / "round-1" / "kge" / "config.yaml").read_text())
    assert run["data"]["name"] == str(tmp_path / "graph-0")  # the hard graph is not read
    assert run["teachers"]["soft"]["path"] == str(tmp_path / "soft-1.safetensors")
    assert {"loss": "soft_labels", "teacher": "soft", "weight": 0.5} in [
        {k: t[k] for k in ("loss", "teacher", "weight") if k in t}
        for t in run["stages"][0]["objective"]
    ]
    log = [
        json.loads(x) for x in (tmp_path / "round-1" / "kge" / "log.jsonl").read_text().splitlines()
    ]
    assert all(e["soft_labels[soft]"] > 0 for e in log if e["event"] == "epoch")
    with pytest.raises(ConfigError, match="labels"):
        _cfg(tiny_encoder_folder, labels="fuzzy")


def _spawn(spec: Path, work: Path) -> subprocess.Popen:
    """The rounds of ``spec`` (a RoundsConfig as JSON) in a process of one thread (as the rerun: same sums)."""
    code = (
        "import json, sys, torch; from kgdistill.kglm.rounds import RoundsConfig, lm_baseline, run_rounds; "
        "torch.set_num_threads(1); "
        "run_rounds(RoundsConfig(**json.load(open(sys.argv[1]))), sys.argv[2])"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(spec), str(work)], env=env, stderr=subprocess.PIPE
    )


@pytest.mark.slow
def test_rounds_resume_after_kill_9(tiny_encoder_folder: Path, tmp_path: Path) -> None:
    """Killed in round 1 (its KGE run has a checkpoint), rerun: the same records as a run never killed."""
    spec = tmp_path / "rounds.json"
    spec.write_text(json.dumps(asdict(_cfg(tiny_encoder_folder, max_rounds=2))))
    ref = _spawn(spec, tmp_path / "ref")
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()  # type: ignore[union-attr]
    work = tmp_path / "killed"
    proc = _spawn(spec, work)
    deadline = time.time() + 600
    while not (work / "round-1" / "kge" / "last.safetensors").exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail(
            f"the rounds finished before they could be killed: {proc.stderr.read().decode()}"
        )  # type: ignore[union-attr]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "round-1" / "round.json").exists()
    again = _spawn(spec, work)
    assert again.wait(timeout=600) == 0, again.stderr.read().decode()  # type: ignore[union-attr]
    for i in (0, 1):
        a = json.loads((tmp_path / "ref" / f"round-{i}" / "round.json").read_text())
        b = json.loads((work / f"round-{i}" / "round.json").read_text())
        assert a == b, i


@pytest.mark.parametrize("source", ["kge", "symmetric", "kge+symmetric"])
def test_each_candidate_source_proposes_its_pool(
    tiny_encoder_folder: Path, source: str, fb_mini: KG
) -> None:
    """``source``: the KGE's filtered top-k, the symmetry rule's missing reverses, or both pools, each
    candidate once; none of them a fact of the round's graph or an evaluated fact."""
    from kgdistill.kglm.rounds import _candidates

    cfg = _cfg(tiny_encoder_folder, source=source)
    kept, _ = hold_out(fb_mini, 0.2, seed=0)
    torch.manual_seed(0)
    model = build_model(
        {"name": "distmult", "dim": 8},
        Vocab(num_entities=fb_mini.num_entities, num_relations=fb_mini.num_relations),
    )
    got = _candidates(cfg, model, fb_mini, kept, 0)
    kge = {tuple(f) for f in propose(model, fb_mini, kept, k=3, max_queries=150, seed=0).tolist()}
    rule = {tuple(f) for f in propose_symmetric(fb_mini, kept).tolist()}
    want = {"kge": kge, "symmetric": rule, "kge+symmetric": kge | rule}[source]
    rows = [tuple(f) for f in got.tolist()]
    assert len(rule) > 100 and rule - kge  # the rule adds facts the KGE's top-k lacks
    assert set(rows) == want and len(rows) == len(want)
    known = {tuple(f) for f in kept.tolist()}
    known |= {tuple(f) for s in ("valid", "test") for f in fb_mini.splits[s][:, :3].tolist()}
    assert not set(rows) & known


@pytest.mark.parametrize(
    ("key", "value"), [("source", "text"), ("symmetric_share", 0.0), ("symmetric_share", 1.5)]
)
def test_a_wrong_candidate_source_is_one_error(
    tiny_encoder_folder: Path, key: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        _cfg(tiny_encoder_folder, **{key: value})
