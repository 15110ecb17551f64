"""``kgdistill train`` of the shipped bi-encoder config on the WN18RR subset (a tiny local encoder folder with
dropout), and a run killed with SIGKILL that resumes to identical weights and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kgdistill import api
from kgdistill.config import parse_config
from kgdistill.errors import ConfigError

from .conftest import assert_same_weights, killed_and_resumed

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def _config(encoder: Path, epochs: int = 3, contexts: Path | None = None) -> dict:
    """The shipped config on the subset; with ``contexts`` (a store), the ``reconstruction`` term too."""
    cfg = yaml.safe_load((REPO / "configs" / "plm" / "bi_encoder-wn18rr.yaml").read_text())
    cfg["data"] = {"name": str(FIXTURES / "wn18rr-mini")}
    cfg["model"] |= {"encoder": str(encoder), "max_length": 16, "chunk_size": 256}
    cfg["stages"][0]["epochs"] = epochs
    if contexts is not None:
        cfg["model"]["context"] = {"store": str(contexts), "max_length": 24}
        cfg["stages"][0]["objective"].append({"loss": "reconstruction", "weight": 0.5})
    cfg["train"] |= {
        "batch_size": 64,
        "lr": 1.0e-2,
        "param_groups": [{"match": ["entities.encoder.*"], "lr": 1.0e-3}],
        "scheduler": {"name": "linear", "warmup": 10},
        "amp": False,
        "eval_max_queries": 20,
        "progress": False,
        "device": "cpu",
    }
    cfg["eval"] |= {"batch_size": 64}
    return cfg


@pytest.mark.slow
def test_the_shipped_config_trains_and_evaluates(tiny_encoder_folder: Path, tmp_path: Path) -> None:
    result = api.train(parse_config(_config(tiny_encoder_folder, epochs=2)), out=tmp_path / "run")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    log = [json.loads(x) for x in (result.run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in log if e["event"] == "epoch"]
    assert len(epochs) == 2 and all(e["info_nce"] > 0 for e in epochs)
    assert [e["event"] for e in log].count(
        "valid"
    ) == 2  # validation ranked all entities every epoch
    assert 0 < metrics["sides"]["both"]["mrr"] <= 1
    assert metrics["plm"]["max_length"] == 16 and "relations" in metrics["plm"]["truncated"]


@pytest.mark.slow
def test_contexts_train_with_the_reconstruction_term(
    tiny_encoder_folder: Path, wn_store: Path, tmp_path: Path
) -> None:
    cfg = _config(tiny_encoder_folder, epochs=1, contexts=wn_store)
    result = api.train(parse_config(cfg), out=tmp_path / "run")
    log = [json.loads(x) for x in (result.run_dir / "log.jsonl").read_text().splitlines()]
    epoch = next(e for e in log if e["event"] == "epoch")
    assert epoch["reconstruction"] > 0 and epoch["info_nce"] > 0
    report = json.loads((result.run_dir / "metrics.json").read_text())["plm"]["contexts"]
    assert report["store"] == wn_store.name and report["entities"]["n"] > 0
    assert report["train_triples"]["own"]["n"] == 0  # entity contexts only
    cfg["model"]["context"]["mask_rate"] = 1.5
    with pytest.raises(ConfigError, match=r"model\.context\.mask_rate"):
        api.train(parse_config(cfg), out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
@pytest.mark.parametrize("contexts", [False, True], ids=["plain", "contexts"])
def test_kill_9_and_resume_gives_identical_weights(
    tiny_encoder_folder: Path, wn_store: Path, tmp_path: Path, contexts: bool
) -> None:
    config = tmp_path / "bi.yaml"
    config.write_text(
        yaml.safe_dump(_config(tiny_encoder_folder, contexts=wn_store if contexts else None))
    )
    ref, run = killed_and_resumed(config, tmp_path, timeout=600)
    a = json.loads((ref / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert a["sides"] == b["sides"]
    assert_same_weights(ref, run, ("model.", "optim.", "objective."))
