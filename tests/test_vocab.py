"""A model evaluated on a graph it was not trained on: one error naming both graphs, in the Python API and the
CLI (not an IndexError from inside PyTorch)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model, save_checkpoint
from kgdistill.cli import cli
from kgdistill.config import parse_config
from kgdistill.data import KG, load_kg
from kgdistill.errors import GraphMismatchError, KGDistillError
from kgdistill.models import Vocab, build_model
from kgdistill.run import Run
from kgdistill.vocab import GraphVocab, check_graph, model_vocab

FIXTURES = Path(__file__).parent / "fixtures"
PROTOCOL = {"granularity": "bins", "min_bin_size": 300, "interval_mode": "start"}


@pytest.fixture(scope="module")
def mini() -> KG:
    """A real YAGO11k subset, read with the same time protocol as the model's graph."""
    return load_kg(FIXTURES / "yago11k-mini", **PROTOCOL)


@pytest.fixture(scope="module")
def yago_run() -> Run:
    """A TA-DistMult built (not trained) for the bundled YAGO11k, as a run builds it."""
    cfg = parse_config(
        {
            "data": {"name": "yago11k", "time": PROTOCOL},
            "model": {"name": "ta_distmult", "dim": 4},
            "train": {"progress": False},
        }
    )
    return Run.build(cfg, progress=False)


def test_a_run_model_on_another_graph_names_both(yago_run: Run, mini: KG) -> None:
    with pytest.raises(GraphMismatchError) as err:
        api.evaluate(yago_run.model, mini, "test")
    message = str(err.value)
    assert "trained on 'yago11k' (10,623 entities, 10 relations" in message
    assert f"'yago11k-mini' ({mini.num_entities:,} entities" in message
    assert f"10,623 vs {mini.num_entities:,} entities" in message
    assert isinstance(err.value, KGDistillError)


def test_a_model_built_by_hand_is_checked_by_its_sizes(yago: KG, mini: KG) -> None:
    model = build_model(
        {"name": "distmult", "dim": 4}, Vocab(yago.num_entities, yago.num_relations)
    )
    with pytest.raises(GraphMismatchError, match=r"an unnamed graph \(10,623 entities"):
        api.evaluate(model, mini)


def test_the_graph_a_model_was_built_for_is_evaluated(mini: KG) -> None:
    model = build_model(
        {"name": "ttranse", "dim": 4},
        Vocab(mini.num_entities, mini.num_relations, mini.time.labels),
    )
    metrics = api.evaluate(model, mini, "valid", ties="pessimistic")
    assert 0 < metrics.mrr <= 1 and metrics.protocol["ties"] == "pessimistic"


def test_same_sizes_other_labels_are_refused(mini: KG) -> None:
    ours = GraphVocab.of_kg(mini)
    labels = list(ours.entity_labels or ())
    labels[0], labels[1] = labels[1], labels[0]
    other = dataclasses.replace(ours, dataset="shuffled", entity_labels=tuple(labels))
    with pytest.raises(GraphMismatchError, match=f"entity 0 is '{labels[1]}' vs '{labels[0]}'"):
        check_graph(ours, other)


def test_a_static_model_ignores_the_time_protocol(mini: KG) -> None:
    """Another time binning changes nothing for a static model, everything for a temporal one."""
    yearly = load_kg(FIXTURES / "yago11k-mini", granularity="year")
    assert yearly.num_times != mini.num_times
    vocab = Vocab(mini.num_entities, mini.num_relations, mini.time.labels)
    static = build_model({"name": "distmult", "dim": 4}, vocab)
    check_graph(static, yearly)
    temporal = build_model({"name": "ttranse", "dim": 4}, vocab)
    with pytest.raises(GraphMismatchError, match=f"{mini.num_times} vs {yearly.num_times} times"):
        check_graph(temporal, yearly)


def test_a_checkpoint_records_its_graph(yago_run: Run, tmp_path: Path) -> None:
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, model=yago_run.model, meta=yago_run.meta())
    vocab = model_vocab(load_model(load_checkpoint(path)))
    assert vocab is not None and vocab.dataset == "yago11k" and vocab.num_times == 63
    assert vocab == GraphVocab.of_kg(yago_run.kg)


def test_cli_evaluate_on_another_copy_of_the_data(yago_run: Run, tmp_path: Path) -> None:
    """A checkpoint of the bundled YAGO11k evaluated under a data root whose YAGO11k is a subset: exit 2."""
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "best.safetensors", model=yago_run.model, meta=yago_run.meta())
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "yago11k-mini", root / "YAGO11k")
    result = CliRunner().invoke(
        cli, ["-q", "evaluate", str(run), "--data-root", str(root)], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert "best.safetensors was trained on 'yago11k' (10,623 entities" in result.output
    assert "cannot be evaluated on 'yago11k' (" in result.output
