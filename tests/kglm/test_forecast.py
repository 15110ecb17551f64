"""The ExpTime forecasting task (real questions: ``tests/fixtures/llm-text-mini/exptime-mini.json``, 60 records
whose questions name ``icews14-mini`` actors, derived by ``make_llm_text_fixtures.py``): answers parsed, the
answer instructions cut, mentions on exactly the actors' tokens, the held-out-actor split, the classifier with
and without the KGE injected, and bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill.data import KG, load_kg
from kgdistill.errors import ConfigError, DataError
from kgdistill.kglm import ForecastClassifier, evaluate_task, fit_task, forecast_task
from kgdistill.plm.encoders import load_encoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MINI = FIXTURES / "llm-text-mini" / "exptime-mini.json"


@pytest.fixture(scope="module")
def encoder(tiny_encoder_folder: Path) -> Any:
    return load_encoder(str(tiny_encoder_folder))


def test_answers_mentions_and_the_held_out_actor_split(tiny_point_kg: KG, encoder: Any) -> None:
    task = forecast_task(MINI, list(tiny_point_kg.entity_labels), encoder.tokenizer, max_length=64)
    records = json.loads(MINI.read_text())
    first = [r["output"].split()[0].strip(".,").lower() for r in records]
    want = {"yes": first.count("yes"), "no": first.count("no")}
    assert task.report["parsed"] == len(records) == 60
    assert {k: task.report["answers"][k] for k in want} == want
    assert task.report["answers"]["unsure"] == 60 - sum(want.values())
    # every mention's tokens spell an actor's name; the question part ends at its question mark
    tok = encoder.tokenizer
    for row in range(len(records)):
        ids, mentions = task.ids[row][task.mask[row]], task.mentions[row][task.mask[row]]
        # each run of tokens mentioning one entity decodes to its name (once per adjacent mention); a
        # mention the window cuts, just before the last [SEP], keeps a prefix of the name
        bounds = (mentions[1:] != mentions[:-1]).nonzero()[:, 0] + 1
        ends = [*bounds.tolist(), len(ids)]
        for run_ids, run, end in zip(
            ids.tensor_split(bounds), mentions.tensor_split(bounds), ends, strict=True
        ):
            if run[0] < 0:
                continue
            name = tiny_point_kg.entity_labels[int(run[0])].lower().replace(" ", "")
            text = tok.decode(run_ids).replace(" ", "")
            whole = name * max(len(text) // len(name), 1)
            assert text == whole or (end == len(ids) - 1 and whole.startswith(text)), (text, name)
        question = tok.decode(ids[: (ids == tok.sep_token_id).nonzero()[0, 0]])
        assert question.rstrip().endswith("?") and "explain" not in question
    assert task.report["with_mention"] >= 55
    # test questions name a held-out actor; no training or validation question does
    seps = [(task.ids[r] == tok.sep_token_id).nonzero()[0, 0] for r in range(60)]

    def named(row: int) -> set[int]:
        m = task.mentions[row, : seps[row]]
        return set(m[m >= 0].tolist())

    test = {int(r) for r in task.rows["test"]}
    held = set(task.held_out)
    assert test and all(named(r) & held for r in test)
    for split in ("train", "valid"):
        for r in task.rows[split].tolist():
            assert not named(r) & held
    sizes = sum(len(r) for r in task.rows.values())
    assert sizes == 60 and 0.2 * 60 <= len(test) <= 0.5 * 60


def test_the_classifier_with_and_without_injection(tiny_point_kg: KG, encoder: Any) -> None:
    task = forecast_task(MINI, list(tiny_point_kg.entity_labels), encoder.tokenizer, max_length=64)
    dim = int(encoder.config["hidden_size"])
    torch.manual_seed(0)
    table = torch.randn(tiny_point_kg.num_entities, 8)
    known = torch.ones(tiny_point_kg.num_entities, dtype=torch.bool)
    known[::2] = False
    plain = ForecastClassifier(task, encoder.config, encoder.state, dim)
    injected = ForecastClassifier(
        task, encoder.config, encoder.state, dim, entity_table=table, known=known
    )
    injected.head.load_state_dict(plain.head.state_dict())
    plain.eval(), injected.eval()
    rows = task.pairs["train"][:8]
    with torch.no_grad():
        a, b = plain(rows), injected(rows)
    has = (injected.mentions[rows[:, 0]] >= 0).any(1)
    assert has.any() and not torch.allclose(a[has], b[has])
    assert torch.allclose(a[~has], b[~has], atol=1e-6)
    assert not (
        injected.mentions[injected.mentions >= 0] % 2 == 0
    ).any()  # unknown rows not injected
    history = fit_task(injected, task, epochs=1, batch_size=16, lr=1e-3, head_lr=1e-2)
    assert history[0]["loss"] > 0 and 0 <= history[0]["accuracy"] <= 1
    assert injected.injection is not None
    assert evaluate_task(injected, task, "test")["examples"] == len(task.rows["test"])
    with pytest.raises(ConfigError, match="distill"):
        fit_task(plain, task, epochs=1, distill={"loss": "fitnet"}, teacher_table=table)


def test_bad_files_are_one_error(tiny_point_kg: KG, encoder: Any, tmp_path: Path) -> None:
    labels = list(tiny_point_kg.entity_labels)
    bad = tmp_path / "bad.json"
    bad.write_text('{"instruction": "x"}')
    with pytest.raises(DataError, match=r"bad\.json: expected a JSON list"):
        forecast_task(bad, labels, encoder.tokenizer)
    bad.write_text(
        json.dumps([{"instruction": "x", "input": "y", "output": "Yes."}, {"input": "y"}])
    )
    with pytest.raises(DataError, match="example 1"):
        forecast_task(bad, labels, encoder.tokenizer)
    bad.write_text(json.dumps([{"instruction": "x?", "input": "y", "output": "Maybe."}]))
    with pytest.raises(DataError, match="no example"):
        forecast_task(bad, labels, encoder.tokenizer)


def test_the_full_question_set_on_icews14(data_root: Path) -> None:
    """All 1,001 ExpTime questions parse; most name ICEWS14 actors."""
    kg = load_kg("icews14", root=data_root)
    tok = load_encoder(None).tokenizer
    path = data_root / "llm-text" / "TimeLlama-ExpTime" / "eval_dataset.json"
    task = forecast_task(path, list(kg.entity_labels), tok, max_length=256)
    assert task.report["parsed"] == 1001 and task.report["unparsed"] == 0
    assert task.report["answers"] == {"yes": 435, "no": 300, "unsure": 266}
    assert task.report["with_mention"] > 900
