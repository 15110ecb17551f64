"""The generation job: real generation through SmolLM2-135M on real YAGO11k keys, resuming (an interrupted run,
a torn line, ``kill -9`` of the CLI), filters and retries, subsets, the dry run and progress lines."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kgdistill.contexts import (
    QualityFilter,
    generate_contexts,
    plan_contexts,
    read_store,
    select_items,
)
from kgdistill.data import KG
from kgdistill.errors import DataError
from kgdistill.llm import HFGenerator, Sampling
from kgdistill.llm.generators import estimate_tokens

from .conftest import LONG, ScriptedGenerator, invoke

REQUIRED = {
    "kind",
    "key",
    "status",
    "reason",
    "text",
    "prompt",
    "model",
    "sampling",
    "tokens_in",
    "tokens_out",
    "seconds",
    "attempts",
    "created",
}
ANY_TEXT = QualityFilter(min_words_entity=0, min_words_triple=0, max_repeated=1.0, max_echo=1.0)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()[1:]]


def keys_file(tmp_path: Path, yago: KG, entities: int, triples: int) -> Path:
    items = select_items(yago, "ed+td")
    chosen = items[:entities] + items[yago.num_entities : yago.num_entities + triples]
    path = tmp_path / "keys.txt"
    text = "".join((it.key if it.kind == "entity" else "\t".join(it.key)) + "\n" for it in chosen)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow  # real SmolLM2 generation, several seconds; the llm-serve test covers it in the fast tier
def test_real_generation_with_smollm2(yago: KG, smollm2: HFGenerator, tmp_path: Path) -> None:
    """Two entities and two triples of YAGO11k through the real model: full records, greedy texts equal to the
    model's own, and a rerun asks for nothing."""
    store = tmp_path / "ctx.jsonl"
    keys = keys_file(tmp_path, yago, 2, 2)
    sampling = Sampling(max_new_tokens=16)
    report = generate_contexts(
        yago, store, smollm2, path="ed+td", keys=keys, sampling=sampling, filters=ANY_TEXT
    )
    assert (report.selected, report.written, report.accepted, report.already) == (4, 4, 4, 0)
    assert report.tokens_out > 0 and report.records_per_s > 0
    recs = lines(store)
    assert [r["kind"] for r in recs] == ["entity", "entity", "triple", "triple"]
    for r in recs:
        assert set(r) >= REQUIRED and r["status"] == "ok" and r["text"]
        assert r["model"] == "hf:SmolLM2-135M-Instruct.Q4_1" and r["attempts"] == 1
        assert r["sampling"]["max_new_tokens"] == 16 and 0 < r["tokens_out"] <= 16
    expected = smollm2.generate([r["prompt"] for r in recs], sampling)
    assert [r["text"] for r in recs] == [g.text for g in expected]
    again = generate_contexts(yago, store, smollm2, path="ed+td", keys=keys, sampling=sampling)
    assert (again.already, again.written) == (4, 0)
    assert len(lines(store)) == 4


@pytest.mark.slow  # real SmolLM2 generation, several seconds; the llm-serve test covers it in the fast tier
def test_cli_through_an_openai_server(yago: KG, smollm2: HFGenerator, tmp_path: Path) -> None:
    """``contexts generate --generator openai`` against ``llm-serve``'s app (real SmolLM2 behind it, requests in
    flight batched by the server): the same greedy texts as the model run locally, usage counts recorded."""
    from kgdistill.llm.serve import BackgroundServer, create_app

    store = tmp_path / "ctx.jsonl"
    with BackgroundServer(create_app(smollm2, None, generator_name="smol")) as server:
        result = invoke(
            "contexts", "generate", "yago11k", "--path", "ed", "--limit", "3", "--out", str(store),
            "--max-new-tokens", "16", "--min-words", "0", "--generator", "openai",
            "--option", f"base_url={server.base_url}", "--option", "model=smol",
            "--option", "concurrency=3",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] == 3 and report["model"] == f"openai:{server.base_url}#smol"
    recs = lines(store)
    local = smollm2.generate([r["prompt"] for r in recs], Sampling(max_new_tokens=16))
    assert [r["text"] for r in recs] == [g.text for g in local]
    assert [r["tokens_out"] for r in recs] == [g.tokens_out for g in local]


def test_interrupted_run_resumes_without_gaps_or_duplicates(yago: KG, tmp_path: Path) -> None:
    store = tmp_path / "ctx.jsonl"

    def answer(prompt: str, sampling: Sampling) -> str:
        return f"{LONG} ({prompt})"

    failing = ScriptedGenerator(answer, batch_size=3, fail_on_call=3)
    with pytest.raises(RuntimeError, match="scripted failure"):
        generate_contexts(yago, store, failing, path="td", limit=10, filters=ANY_TEXT)
    before = store.read_text(encoding="utf-8").splitlines()
    assert len(before) == 1 + 6  # two finished batches of 3 were written
    rerun = ScriptedGenerator(answer, batch_size=3)
    report = generate_contexts(yago, store, rerun, path="td", limit=10, filters=ANY_TEXT)
    assert (report.already, report.written) == (6, 4)
    asked = [k for keys, _ in rerun.calls for k in keys]
    assert len(asked) == 4  # nothing already generated is asked again
    after = store.read_text(encoding="utf-8").splitlines()
    assert after[: len(before)] == before
    keys = [tuple(r["key"]) for r in lines(store)]
    assert keys == [it.key for it in select_items(yago, "td", limit=10)]


def test_torn_last_line_is_regenerated(yago: KG, tmp_path: Path) -> None:
    store = tmp_path / "ctx.jsonl"
    gen = ScriptedGenerator(lambda p, s: LONG)
    generate_contexts(yago, store, gen, path="ed", limit=4, filters=ANY_TEXT)
    data = store.read_bytes()
    store.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 20])  # the last record torn
    report = generate_contexts(yago, store, gen, path="ed", limit=4, filters=ANY_TEXT)
    assert report.repaired and (report.already, report.written) == (3, 1)
    assert store.read_bytes()[:-200] == data[:-200] and len(lines(store)) == 4


def test_filters_retries_and_rejections(yago: KG, tmp_path: Path) -> None:
    """Al Gore's text is always empty: rejected after 1 + 2 attempts, recorded with its reason, not asked again
    by a rerun, asked again with retry_rejected. Edmonton's first text is too short, its retry is kept."""

    def answer(prompt: str, sampling: Sampling) -> str:
        if "Al Gore" in prompt:
            return ""
        if "Edmonton" in prompt and sampling.temperature == 0:
            return "Edmonton is a city."
        return LONG

    store = tmp_path / "ctx.jsonl"
    gen = ScriptedGenerator(answer)
    report = generate_contexts(yago, store, gen, path="ed", limit=4, retries=2)
    assert (report.accepted, report.rejected, report.retried) == (3, 1, 2)
    assert report.rejections == {"empty": 3, "too_short": 1}
    by_key = {r["key"]: r for r in lines(store)}
    gore, edmonton = by_key["<Al_Gore>"], by_key["<Edmonton>"]
    assert gore["status"] == "rejected" and gore["reason"] == "empty" and gore["attempts"] == 3
    assert gore["rejections"] == ["empty"] * 3
    assert edmonton["status"] == "ok" and edmonton["attempts"] == 2
    assert edmonton["rejections"] == ["too_short"]
    assert edmonton["sampling"]["temperature"] == 0.7 and edmonton["sampling"]["seed"] == 1
    assert [s.temperature for _, s in gen.calls] == [0.0, 0.7, 0.7]
    rerun = ScriptedGenerator(answer)
    assert generate_contexts(yago, store, rerun, path="ed", limit=4).written == 0
    assert rerun.calls == []
    retry = ScriptedGenerator(lambda p, s: LONG)
    report = generate_contexts(yago, store, retry, path="ed", limit=4, retry_rejected=True)
    assert report.written == 1 and [k for k, _ in retry.calls] == [["entity <Al_Gore>"]]
    assert read_store(store).records["entity\t<Al_Gore>"]["status"] == "ok"
    assert len(lines(store)) == 4


def test_progress_lines_when_not_a_terminal(
    yago: KG, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gen = ScriptedGenerator(lambda p, s: LONG, batch_size=2)
    with caplog.at_level(logging.INFO, logger="kgdistill.contexts.job"):
        generate_contexts(yago, tmp_path / "c.jsonl", gen, path="ed", limit=4, filters=ANY_TEXT)
    msgs = [r.getMessage() for r in caplog.records if r.name == "kgdistill.contexts.job"]
    assert len(msgs) == 2 and msgs[-1].startswith("contexts 4/4 (100.0%)")
    assert "records/s" in msgs[0] and "tokens/s" in msgs[0] and "ETA" in msgs[0]


def test_dry_run_counts_and_cost(yago: KG, tmp_path: Path) -> None:
    store = tmp_path / "ctx.jsonl"
    generate_contexts(
        yago, store, ScriptedGenerator(lambda p, s: LONG), path="td", limit=3, filters=ANY_TEXT
    )
    spec = {"name": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    sampling = Sampling(max_new_tokens=200)
    plan = plan_contexts(
        yago, store, spec, path="td", limit=10, sampling=sampling, price_in=0.5, price_out=2.0
    )
    todo = select_items(yago, "td", limit=10)[3:]
    assert (plan["selected"], plan["already"], plan["to_generate"]) == (10, 3, 7)
    assert plan["prompt_tokens"] == sum(estimate_tokens(it.prompt) for it in todo)
    assert plan["prompt_tokens_method"] == "estimate (words x 1.3)"
    assert plan["output_tokens_max"] == 7 * 200
    assert plan["cost_max"] == round(plan["prompt_tokens"] / 1e6 * 0.5 + 1400 / 1e6 * 2.0, 4)
    assert [e["prompt"] for e in plan["examples"]] == [it.prompt for it in todo[:3]]


def test_cli_dry_run_uses_the_local_tokenizer(smollm2: HFGenerator, tmp_path: Path) -> None:
    result = invoke(
        "contexts", "generate", "yago11k", "--path", "ed", "--limit", "5", "--dry-run",
        "--out", str(tmp_path / "c.jsonl"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["to_generate"] == 5 and plan["prompt_tokens_method"].startswith("tokenizer of")
    assert len(plan["examples"]) == 3 and not (tmp_path / "c.jsonl").exists()


def test_bad_keys_file_is_exit_2(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("<Al_Gore>\n<No_Such_Person>\n", encoding="utf-8")
    result = invoke(
        "contexts", "generate", "yago11k", "--path", "ed", "--keys", str(keys), "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"{keys}, line 2: entity <No_Such_Person> is not a key" in result.output


def test_select_items_errors(yago: KG) -> None:
    with pytest.raises(DataError, match="unknown prompt path 'xx'"):
        select_items(yago, "xx")


@pytest.mark.slow
def test_kill_9_mid_generation_then_resume(smollm2: HFGenerator, tmp_path: Path) -> None:
    """The CLI on 10 real YAGO11k triples, batches of 2, killed with SIGKILL once records are on disk; the same
    command again: every key exactly once, records finished before the kill unchanged, every greedy text the
    model's own."""
    store = tmp_path / "ctx.jsonl"
    args = [
        sys.executable, "-m", "kgdistill", "contexts", "generate", "yago11k", "--path", "td",
        "--limit", "10", "--max-new-tokens", "16", "--min-words", "0", "--out", str(store),
        "--option", "batch_size=2", "--option", "device=cpu",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if store.is_file() and store.read_bytes().count(b"\n") >= 1 + 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = store.read_bytes()
    done = before[: before.rfind(b"\n") + 1].decode().splitlines()
    assert 1 + 4 <= len(done) < 1 + 10, "the kill came too late to test a resume"
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    after = store.read_text(encoding="utf-8").splitlines()
    assert after[: len(done)] == done
    recs = lines(store)
    keys = [tuple(r["key"]) for r in recs]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 10
    report = json.loads(rerun.stdout)
    assert report["already"] == len(done) - 1 and report["written"] == 10 - report["already"]
    texts = smollm2.generate([r["prompt"] for r in recs], Sampling(max_new_tokens=16))
    assert [r["text"] for r in recs] == [g.text for g in texts]
