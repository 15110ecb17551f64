"""A checkpoint teacher with a score cache: rows written once, read back as the checkpoint's scores (float16),
embeddings and other queries still from the checkpoint, refused for another checkpoint; a student trains the same."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kgdistill import api
from kgdistill.config import load_config, parse_config
from kgdistill.data import build_kg, read_hyte
from kgdistill.data.batching import both_directions
from kgdistill.distill.cache import write_cache
from kgdistill.distill.teachers import KGETeacher
from kgdistill.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _queries(kg, split: str, n: int = 60) -> torch.Tensor:
    return both_directions(kg.splits[split][:n], kg.num_relations)


def test_rows_are_written_once_and_answer_like_the_checkpoint(
    tmp_path: Path, teacher_path: Path, tiny_tkg, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = tmp_path / "rows.safetensors"
    plain = KGETeacher(path=str(teacher_path), kg=tiny_tkg)
    cached = KGETeacher(path=str(teacher_path), kg=tiny_tkg, score_cache=str(rows))
    assert not rows.exists()  # written on first use, on the teacher's device
    train = _queries(tiny_tkg, "train")
    out, ref = cached(train), plain(train)
    assert rows.is_file() and out.mask is None
    torch.testing.assert_close(out.scores, ref.scores.half().float())
    for field in ("h", "r", "t", "time_table"):  # embeddings from the checkpoint, as they are
        assert torch.equal(getattr(out, field), getattr(ref, field))
    stamp = rows.stat().st_mtime_ns
    # a second teacher reads the file: no scoring of training queries by the model
    again = KGETeacher(path=str(teacher_path), kg=tiny_tkg, score_cache=str(rows))
    assert again.rows is not None and again.rows.meta["k"] is None

    def no_scoring(*args, **kwargs):
        raise AssertionError("the model scored a query the cache holds")

    monkeypatch.setattr(again, "_model_scores", no_scoring)
    torch.testing.assert_close(again(train, fields=frozenset({"scores"})).scores, out.scores)
    assert rows.stat().st_mtime_ns == stamp
    monkeypatch.undo()
    # queries outside the training split are scored by the checkpoint (exactly), in a mixed batch too
    valid = _queries(tiny_tkg, "valid")
    mixed = torch.cat([train[:7], valid, train[7:20]])
    got, want = again(mixed).scores, plain(mixed).scores
    _, held = again.rows.lookup(mixed)  # queries of the training split (by key)
    outside = ~held
    assert outside.any()
    torch.testing.assert_close(got[held], want[held].half().float())
    assert torch.equal(got[outside], want[outside])
    # candidate scores (sampled negatives) still come from the checkpoint
    cand = torch.randint(tiny_tkg.num_entities, (len(train), 5))
    assert torch.equal(again(train, cand).scores, plain(train, cand).scores)


def test_masks_of_a_teacher_that_lacks_entities(tmp_path: Path, tiny_tkg, save_teacher) -> None:
    raw = read_hyte(FIXTURES / "wikidata12k-mini")
    renamed = [x + "_elsewhere" if i % 20 == 0 else x for i, x in enumerate(raw.entity_labels)]
    path = save_teacher(tmp_path / "t.safetensors", build_kg(replace(raw, entity_labels=renamed)))
    plain = KGETeacher(path=str(path), kg=tiny_tkg)
    cached = KGETeacher(path=str(path), kg=tiny_tkg, score_cache=str(tmp_path / "rows.safetensors"))
    q = _queries(tiny_tkg, "train", 80)
    out, ref = cached(q), plain(q)
    assert ref.mask is not None and torch.equal(out.mask, ref.mask)
    torch.testing.assert_close(out.scores[ref.mask], ref.scores[ref.mask].half().float())
    assert (out.scores[~out.mask] == 0).all()


def test_a_cache_of_another_checkpoint_or_topk_is_refused(
    tmp_path: Path, teacher_path: Path, tiny_tkg, save_teacher
) -> None:
    rows = tmp_path / "rows.safetensors"
    KGETeacher(path=str(teacher_path), kg=tiny_tkg, score_cache=str(rows))(
        _queries(tiny_tkg, "train")
    )
    torch.manual_seed(1)
    other = save_teacher(tmp_path / "other.safetensors", tiny_tkg)
    with pytest.raises(ConfigError, match="written from another checkpoint"):
        KGETeacher(path=str(other), kg=tiny_tkg, score_cache=str(rows))
    top = write_cache(
        tmp_path / "top.safetensors",
        KGETeacher(path=str(teacher_path), kg=tiny_tkg),
        tiny_tkg,
        k=4,
        progress=False,
    )
    with pytest.raises(ConfigError, match="holds top-4 rows"):
        KGETeacher(path=str(teacher_path), kg=tiny_tkg, score_cache=str(top))


def test_a_student_trains_the_same_from_the_cached_rows(tmp_path: Path) -> None:
    data = {"name": str(FIXTURES / "wikidata12k-mini"), "time": {"granularity": "year"}}
    teacher = api.train(
        parse_config(
            {
                "data": data,
                "model": {"name": "tntcomplex", "dim": 16},
                "stages": [{"epochs": 3, "objective": [{"loss": "supervised_ce"}]}],
                "train": {"batch_size": 64, "progress": False},
            }
        ),
        out=tmp_path / "teacher",
    ).run_dir

    def student(name: str, extra: dict) -> dict:
        cfg = {
            "data": data,
            "model": {"name": "ttranse", "dim": 8},
            "teachers": {"kge": {"name": "checkpoint", "path": str(teacher), **extra}},
            "stages": [
                {
                    "epochs": 2,
                    "objective": [
                        {"loss": "supervised_ce"},
                        {"loss": "kd_kl", "teacher": "kge", "temperature": 2.0},
                        {"loss": "fitnet", "teacher": "kge", "fields": ["h", "t"]},
                    ],
                }
            ],
            "train": {"batch_size": 64, "optimizer": "adam", "lr": 0.01, "progress": False},
        }
        api.train(parse_config(cfg), out=tmp_path / name)
        log = (tmp_path / name / "log.jsonl").read_text().splitlines()
        return [json.loads(x) for x in log if '"event": "epoch"' in x]

    rows = tmp_path / "teacher" / "train-scores.safetensors"
    plain = student("plain", {})
    cached = student("cached", {"score_cache": str(rows)})
    assert rows.is_file()
    for a, b in zip(plain, cached, strict=True):
        assert a["kd_kl[kge]"] == pytest.approx(b["kd_kl[kge]"], rel=1e-3)
        assert a["fitnet[kge]"] == pytest.approx(b["fitnet[kge]"], rel=1e-3)
    metrics = json.loads((tmp_path / "cached" / "metrics.json").read_text())
    assert metrics["teachers"]["kge"]["score_cache"]["queries"] > 0
    # full rows written by `kgdistill cache --full` serve as the checkpoint's score cache
    full = api.cache(teacher, tmp_path / "full.safetensors", k=None, progress=False)
    kg = api.load_data(load_config(tmp_path / "cached" / "config.yaml")[0])
    read = KGETeacher(path=str(teacher), kg=kg, score_cache=str(full))
    assert (
        read.rows is not None
        and read.rows.meta["queries"] == metrics["teachers"]["kge"]["score_cache"]["queries"]
    )


_PEAK = """
import resource, sys, torch
from kgdistill.data import load_kg
from kgdistill.distill.cache import write_cache
from kgdistill.models.base import ModelOutput

kg = load_kg("yago11k")


def teacher(queries, candidates=None, fields=None):
    return ModelOutput(scores=torch.zeros(len(queries), kg.num_entities))


before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = write_cache(sys.argv[1], teacher, kg, k=None, progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(after - before, path.stat().st_size // 1024)
"""


@pytest.mark.slow  # writes a 0.6 GB cache of the bundled YAGO11k
def test_full_rows_are_held_once_while_written(tmp_path: Path) -> None:
    """Writing full rows raises the process's peak memory by about the cache's size (1.2x measured), not
    several times it (rows gathered per batch and then concatenated: 3.0x, and WN18RR's 8.5 GB cache ran a 24 GB
    machine out of memory)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(tmp_path / "rows.safetensors")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    grown_kb, file_kb = map(int, out.stdout.split())
    assert file_kb > 500_000  # 28,620 queries x 10,623 entities in float16
    assert grown_kb < 1.4 * file_kb, (grown_kb, file_kb)
