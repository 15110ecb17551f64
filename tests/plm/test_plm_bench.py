"""benchmarks/plm_contexts.py end to end on the WN18RR subset with tiny local models: every PLM model with names,
descriptions and the real Qwen-7B synonyms as LLM contexts (imported by the driver), the re-rankers evaluated on
the bi-encoder's top-k, runs reused on a second call, result files written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WN = str(FIXTURES / "wn18rr-mini")
TINY = {
    "aux_weight": 0.5,
    "sources": {WN: {"qwen": str(FIXTURES / "llm-text-mini" / "entity2sysnonyms_Qwen.txt")}},
    "profiles": {
        "tiny": {
            "bi_encoder": {
                "epochs": 1,
                "epoch_queries": 128,
                "batch_size": 32,
                "max_length": 16,
                "context_length": 24,
                "rows": 8,
                "lr": 1.0e-3,
            },
            "cross_encoder": {
                "epochs": 1,
                "epoch_queries": 32,
                "batch_size": 8,
                "negatives": 3,
                "max_length": 24,
                "context_length": 24,
                "rows": 4,
                "lr": 1.0e-3,
            },
            "generative": {
                "epochs": 1,
                "epoch_queries": 16,
                "batch_size": 4,
                "max_length": 40,
                "context_length": 24,
                "rows": 2,
                "lr": 1.0e-3,
            },
            "rerank": {"k": 5, "queries": 6},
            "eval_max_queries": 6,
            "kge": {
                "teacher_dim": 16,
                "teacher_epochs": 2,
                "student_dim": 8,
                "student_epochs": 2,
                "cache_k": 16,
                "temperature": 2.0,
                "weight": 0.5,
            },
        }
    },
}


@pytest.mark.slow
def test_the_driver_runs_every_model_and_source(
    tiny_encoder_folder: Path, tiny_lm_path: Path, tmp_path: Path
) -> None:
    from plm_contexts import _markdown, _table, run_benchmark

    kwargs = {
        "spec": TINY,
        "datasets": [WN],
        "models": ["bi_encoder", "cross_encoder", "generative"],
        "sources": None,
        "seeds": [0],
        "profile": "tiny",
        "encoder": str(tiny_encoder_folder),
        "lm": str(tiny_lm_path),
        "ours": None,
        "work": tmp_path / "work",
        "data_root": FIXTURES,
        "device": "cpu",
        "kge": True,
    }
    rows = run_benchmark(**kwargs)
    got = {(r["model"], r["source"]) for r in rows}
    for model in ("bi_encoder", "cross_encoder", "generative"):
        assert {(model, s) for s in ("names", "descriptions", "qwen")} <= got
    assert ("bi_encoder (retriever of cross_encoder)", "descriptions") in got
    # the retriever's row once per re-ranker and seed, though each source's re-ranker is tested beside it
    assert sum(r["model"] == "bi_encoder (retriever of cross_encoder)" for r in rows) == 1
    # the KGE rows: the teacher and four students, two of them distilled from the qwen bi-encoder, one (the
    # control) from the ComplEx teacher alone
    assert {("complex-16 (teacher)", "-"), ("complex-8", "-")} <= got
    assert {("complex-8 <- bi_encoder (qwen)", "qwen")} <= got
    assert ("complex-8 <- bi_encoder (qwen) + complex-16", "qwen") in got
    assert ("complex-8 <- complex-16", "-") in got
    control = json.loads(
        (
            tmp_path / "work" / "wn18rr-mini" / "complex-8-student3-e2-t16-s0" / "metrics.json"
        ).read_text()
    )
    assert set(control["teachers"]) == {"kge"} and control["teachers"]["kge"]["k"] is None
    both = json.loads(
        (
            tmp_path / "work" / "wn18rr-mini" / "complex-8-student2-e2-t16-s0" / "metrics.json"
        ).read_text()
    )
    assert set(both["teachers"]) == {"plm", "kge"}
    # the ComplEx teacher reaches the student as its full score rows, the bi-encoder as its top-k
    assert both["teachers"]["kge"]["k"] is None
    assert both["teachers"]["kge"]["source"].endswith("complex-16-s0/best.safetensors")
    assert both["teachers"]["plm"]["k"] == TINY["profiles"]["tiny"]["kge"]["cache_k"]
    for r in rows:
        assert 0 < r["mrr"] <= 1 and r["parameters"] > 0
    rerank = [r for r in rows if r["model"] == "cross_encoder"]
    assert all(r["rerank_k"] == 5 and r["queries"] == 12 for r in rerank)
    # a re-ranker's time per query: measured once with the retriever and k it was evaluated with, then kept
    for model in ("cross_encoder", "generative"):
        timed = json.loads(
            (tmp_path / "work" / "wn18rr-mini" / f"{model}-qwen-s0" / "latency.json").read_text()
        )
        assert timed["k"] == 5 and timed["retriever"].endswith("bi_encoder-descriptions-s0")
        assert timed["ms_per_query"] > 0
    assert all(r["ms_per_query"] > 0 for r in rows if r["model"] in ("cross_encoder", "generative"))
    # each re-ranker row has a fused one beside it: the weight chosen on validation over the whole grid, the
    # test split evaluated at that weight on the same facts
    from _plm_fusion import MIXES
    from kgdistill.evaluate import best_mix

    for model in ("cross_encoder", "generative"):
        for source in ("names", "descriptions", "qwen"):
            plain = next(r for r in rows if (r["model"], r["source"]) == (model, source))
            fused = next(
                r for r in rows if (r["model"], r["source"]) == (f"{model} + retriever", source)
            )
            run = tmp_path / "work" / "wn18rr-mini" / f"{model}-{source}-s0"
            doc = json.loads((run / "fusion.json").read_text())
            valid = {float(m): v for m, v in doc["valid_mrr"].items()}
            assert sorted(valid) == list(MIXES)
            assert fused["rerank_mix"] == doc["mix"] == best_mix(valid)
            assert doc["test"]["protocol"]["split"] == "test"
            assert doc["test"]["protocol"]["rerank"]["mix"] == doc["mix"]
            for key in ("queries", "parameters", "train_seconds", "ms_per_query", "rerank_k"):
                assert fused[key] == plain[key]
            if doc["mix"] == 0.0:
                assert fused["mrr"] == plain["mrr"]
    # the LLM rows trained with the auxiliary term, the others without
    for model, term in (("bi_encoder", "reconstruction"), ("generative", "contextualization")):
        for source in ("descriptions", "qwen"):
            log = (
                tmp_path / "work" / "wn18rr-mini" / f"{model}-{source}-s0" / "log.jsonl"
            ).read_text()
            epoch = next(json.loads(x) for x in log.splitlines() if '"event": "epoch"' in x)
            assert (term in epoch) == (source == "qwen")
    assert (tmp_path / "work" / "contexts" / "wn18rr-mini-qwen.jsonl").is_file()
    # a second call reuses every run
    before = {p: p.stat().st_mtime for p in (tmp_path / "work").rglob("best.safetensors")}
    again = run_benchmark(**kwargs)
    assert [r["mrr"] for r in again] == [r["mrr"] for r in rows]
    assert before == {p: p.stat().st_mtime for p in (tmp_path / "work").rglob("best.safetensors")}
    # --finished-only tabulates the finished KGE runs and trains none of the others
    import shutil

    gone = tmp_path / "work" / "wn18rr-mini" / "complex-8-student2-e2-t16-s0"
    shutil.rmtree(gone)
    only = run_benchmark(**kwargs, train=False)
    assert not gone.exists()
    assert {r["model"] for r in rows} - {r["model"] for r in only} == {
        "complex-8 <- bi_encoder (qwen) + complex-16"
    }
    text = _markdown(
        {
            "command": "python benchmarks/plm_contexts.py",
            "machine": {"cpu": "x", "threads": 1, "cuda": None, "torch": "t"},
            "date": "d",
            "profile": "tiny",
            "budget_note": "tiny",
            "aux_weight": 0.5,
            "rows": rows,
        }
    )
    assert "| qwen" in text and len(_table(rows)) == len(got)


def test_an_unknown_source_or_profile_is_one_error(tmp_path: Path) -> None:
    from kgdistill.errors import ConfigError
    from plm_contexts import run_benchmark

    kwargs = {
        "spec": TINY,
        "datasets": [WN],
        "models": ["bi_encoder"],
        "seeds": [0],
        "encoder": None,
        "lm": None,
        "ours": None,
        "work": tmp_path,
        "data_root": FIXTURES,
        "device": "cpu",
    }
    with pytest.raises(ConfigError, match="--profile"):
        run_benchmark(**kwargs, sources=None, profile="huge")
    with pytest.raises(ConfigError, match="no 'gpt-4' contexts"):
        run_benchmark(**kwargs, sources=["gpt-4"], profile="tiny")


def _row(
    dataset: str,
    mrr: float,
    *,
    model: str = "bi_encoder",
    source: str = "descriptions",
    seed: int = 0,
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "model": model,
        "source": source,
        "seed": seed,
        "queries": 2000,
        "mrr": mrr,
        **{f"hits@{k}": mrr for k in (1, 3, 10)},
        "parameters": 22_600_000,
        "train_seconds": 1.0,
        "ms_per_query": 1.0,
    }


def _call(datasets: list[str], **kw: Any) -> Any:
    from plm_contexts import Call

    args: dict[str, Any] = {
        "models": ["bi_encoder"],
        "sources": None,
        "seeds": [0],
        "kge": False,
        "settings": {ds: _digests("s1") for ds in datasets},
    }
    return Call(datasets=datasets, **(args | kw))


def _digests(value: str, **families: str) -> dict[str, str]:
    from plm_contexts import FAMILIES, WHOLE

    return {f: families.get(f, value) for f in (WHOLE, *FAMILIES)}


def _doc(rows: list[dict[str, Any]], sources: dict[str, Any], command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": {"cpu": "x", "threads": 1, "cuda": None, "torch": "t"},
        "date": "d",
        "profile": "cpu",
        "budget_note": "",
        "aux_weight": 0.5,
        "rows": rows,
        "sources": sources,
    }


def test_a_call_for_one_dataset_keeps_the_other_datasets_rows(tmp_path: Path) -> None:
    """An earlier result file's rows of other datasets stay, named with their own command; the rows of the
    datasets this call makes are replaced."""
    from plm_contexts import _markdown, merged_rows

    old = {
        "command": "python benchmarks/plm_contexts.py --datasets fb15k237n",
        "machine": {"cpu": "x", "threads": 2, "cuda": None, "torch": "t"},
        "rows": [_row("fb15k237n", 8.3), _row("wn18rr", 1.0)],
    }
    (tmp_path / "plm_contexts.json").write_text(json.dumps(old))
    rows, sources = merged_rows(
        tmp_path, _call(["wn18rr"]), [_row("wn18rr", 11.6)], ["--datasets", "wn18rr"]
    )
    assert [(r["dataset"], r["mrr"]) for r in rows] == [("fb15k237n", 8.3), ("wn18rr", 11.6)]
    assert sources["fb15k237n"]["command"] == old["command"]
    assert sources["wn18rr"]["command"] == "python benchmarks/plm_contexts.py --datasets wn18rr"
    text = _markdown(_doc(rows, sources, sources["wn18rr"]["command"]))
    assert f"Rows of fb15k237n: `{old['command']}`" in text and "Rows of wn18rr" not in text


def test_a_call_for_more_seeds_or_sources_keeps_the_rows_of_the_same_settings(
    tmp_path: Path,
) -> None:
    """Seed 1 added to a table of seed 0 (same settings digest): both stand, the table's mean is over both and
    the earlier command is named; a cell this call owns (seed 1, descriptions) keeps only this call's row;
    under another digest the earlier rows of the dataset go."""
    from plm_contexts import _markdown, _table, merged_rows

    first = [
        _row("wn18rr", 0.10),
        _row("wn18rr", 0.07, source="names"),
        _row("wn18rr", 0.5, seed=1),
    ]
    rows, sources = merged_rows(tmp_path, _call(["wn18rr"], seeds=[0, 1]), first, ["--seeds", "0"])
    (tmp_path / "plm_contexts.json").write_text(json.dumps(_doc(rows, sources, "first")))
    second = [_row("wn18rr", 0.12, seed=1)]
    call = _call(["wn18rr"], seeds=[1], sources=["descriptions"])
    rows, sources = merged_rows(tmp_path, call, second, ["--seeds", "1"])
    got = sorted((r["source"], r["seed"], r["mrr"]) for r in rows)
    assert got == [("descriptions", 0, 0.10), ("descriptions", 1, 0.12), ("names", 0, 0.07)]
    table = {r["text"]: r for r in _table(rows)}
    assert table["descriptions"]["seeds"] == 2 and table["descriptions"]["MRR"] == "11.0 ± 1.4"
    assert [e["command"] for e in sources["wn18rr"]["earlier"]] == [
        "python benchmarks/plm_contexts.py --seeds 0"
    ]
    text = _markdown(_doc(rows, sources, sources["wn18rr"]["command"]))
    assert "Earlier rows of wn18rr" in text and "--seeds 0" in text
    (tmp_path / "plm_contexts.json").write_text(json.dumps(_doc(rows, sources, "second")))
    changed = _call(["wn18rr"], seeds=[1], settings={"wn18rr": _digests("s2")})
    rows, sources = merged_rows(tmp_path, changed, second, ["--seeds", "1"])
    assert [(r["seed"], r["mrr"]) for r in rows] == [(1, 0.12)] and "earlier" not in sources[
        "wn18rr"
    ]


def test_the_settings_digest_follows_the_budget_and_the_configs() -> None:
    import copy

    from plm_contexts import FAMILIES, WHOLE, settings_digest

    def digests(spec: dict[str, Any], **kw: Any) -> dict[str, str]:
        args = {"encoder": None, "lm": None, "ours": None} | kw
        return {f: settings_digest(spec, "tiny", WN, f, **args) for f in (WHOLE, *FAMILIES)}

    spec = copy.deepcopy(TINY)
    base = digests(spec)
    assert base == digests(spec) and len(set(base.values())) == len(base)
    # the bi-encoder's budget: every family (the re-rankers' retriever, the KGE students' teacher)
    spec["profiles"]["tiny"]["bi_encoder"]["epochs"] = 2
    assert all(a != b for a, b in zip(digests(spec).values(), base.values(), strict=True))
    # one re-ranker's budget: that family (and the whole) only
    spec = copy.deepcopy(TINY)
    spec["profiles"]["tiny"]["cross_encoder"]["epochs"] = 2
    changed = {f for f, d in digests(spec).items() if d != base[f]}
    assert changed == {WHOLE, "cross_encoder"}
    spec = copy.deepcopy(TINY)
    spec["profiles"]["tiny"]["kge"]["student_epochs"] = 4
    assert {f for f, d in digests(spec).items() if d != base[f]} == {WHOLE, "kge"}
    spec = copy.deepcopy(TINY)
    spec["profiles"]["tiny"]["rerank"]["k"] = 7
    changed = {f for f, d in digests(spec).items() if d != base[f]}
    assert changed == {WHOLE, "cross_encoder", "generative"}
    # the checkpoints: the encoder for all, the causal LM for the generative rows only
    assert all(
        a != b for a, b in zip(digests(TINY, encoder="/m").values(), base.values(), strict=True)
    )
    changed = {f for f, d in digests(TINY, lm="/lm").items() if d != base[f]}
    assert changed == {WHOLE, "generative"}


def test_a_new_budget_for_one_model_keeps_the_other_models_rows(tmp_path: Path) -> None:
    """Rows carry their family's digest: a call under a new cross-encoder budget drops the earlier
    cross-encoder rows (and their retriever's) and keeps the bi-encoder's; a row of an older file without a
    digest of its own stands while its dataset's digest of every setting is unchanged."""
    from plm_contexts import merged_rows

    first = [
        _row("wn18rr", 0.10),
        _row("wn18rr", 0.20, model="cross_encoder", source="names"),
        _row("wn18rr", 0.15, model="bi_encoder (retriever of cross_encoder)"),
    ]
    call = _call(["wn18rr"], models=["bi_encoder", "cross_encoder"])
    rows, sources = merged_rows(tmp_path, call, first, [])
    assert {r["settings"] for r in rows} == {"s1"}
    (tmp_path / "plm_contexts.json").write_text(json.dumps(_doc(rows, sources, "first")))
    new_ce = _digests("s1", cross_encoder="c2", **{"*": "w2"})
    call = _call(["wn18rr"], seeds=[1], settings={"wn18rr": new_ce})
    rows, _ = merged_rows(tmp_path, call, [_row("wn18rr", 0.12, seed=1)], [])
    assert sorted((r["model"], r["seed"]) for r in rows) == [("bi_encoder", 0), ("bi_encoder", 1)]
    # an older file: no digest per row, the dataset's digest of every setting decides
    legacy = [{k: v for k, v in r.items() if k != "settings"} for r in first]
    doc = _doc(legacy, {"wn18rr": {"command": "old", "settings": "w1"}}, "old")
    (tmp_path / "plm_contexts.json").write_text(json.dumps(doc))
    same = _digests("s1", **{"*": "w1"})
    rows, sources = merged_rows(
        tmp_path, _call(["wn18rr"], seeds=[1], settings={"wn18rr": same}), [], []
    )
    assert len(rows) == 3 and {r["settings"] for r in rows} == {"s1"}
    # ... and go when that digest changed
    dropped, _ = merged_rows(tmp_path, _call(["wn18rr"], seeds=[1]), [], [])
    assert dropped == []
    # kept, they carry their family's digest: a later cross-encoder budget leaves the bi-encoder's row
    (tmp_path / "plm_contexts.json").write_text(json.dumps(_doc(rows, sources, "stamped")))
    call = _call(["wn18rr"], seeds=[1], settings={"wn18rr": new_ce})
    rows, _ = merged_rows(tmp_path, call, [], [])
    assert [r["model"] for r in rows] == ["bi_encoder"]


def test_fused_rows_belong_to_their_re_ranker() -> None:
    """A fused row is its re-ranker's family (its digest) and a call owns it only for the sources it makes; the
    weight chosen is the best on validation, the smaller one on a tie."""
    from kgdistill.evaluate import best_mix
    from plm_contexts import _family

    assert _family("cross_encoder + retriever") == "cross_encoder"
    assert _family("generative + retriever") == "generative"
    call = _call(["wn18rr"], models=["cross_encoder"], sources=["names"])
    assert call.covers(_row("wn18rr", 0.2, model="cross_encoder + retriever", source="names"))
    assert not call.covers(_row("wn18rr", 0.2, model="cross_encoder + retriever", source="qwen"))
    assert not call.covers(_row("wn18rr", 0.2, model="generative + retriever", source="names"))
    assert call.covers(_row("wn18rr", 0.2, model="bi_encoder (retriever of cross_encoder)"))
    assert best_mix({0.0: 0.1, 0.3: 0.2, 0.5: 0.2, 1.0: 0.15}) == 0.3
    assert best_mix({0.0: 0.1, 1.0: 0.1}) == 0.0


def test_finished_only_with_nothing_finished_trains_nothing(tmp_path: Path) -> None:
    from plm_contexts import run_benchmark

    rows = run_benchmark(
        spec=TINY,
        datasets=[WN],
        models=["bi_encoder", "cross_encoder"],
        sources=None,
        seeds=[0],
        profile="tiny",
        encoder=None,
        lm=None,
        ours=None,
        work=tmp_path,
        data_root=FIXTURES,
        device="cpu",
        train=False,
    )
    assert rows == [] and not list(tmp_path.rglob("*.safetensors"))


@pytest.mark.slow
def test_the_static_control_reconstructs_the_datasets_own_texts(
    tiny_encoder_folder: Path, tmp_path: Path
) -> None:
    from kgdistill.contexts.store import ContextStore
    from kgdistill.data import build_kg, read_static_names
    from kgdistill.text import kg_texts
    from plm_contexts import run_benchmark

    rows = run_benchmark(
        spec=TINY,
        datasets=[WN],
        models=["bi_encoder"],
        sources=["static"],
        seeds=[0],
        profile="tiny",
        encoder=str(tiny_encoder_folder),
        lm=None,
        ours=None,
        work=tmp_path,
        data_root=FIXTURES,
        device="cpu",
    )
    assert [(r["model"], r["source"]) for r in rows] == [("bi_encoder", "static")]
    store = ContextStore(tmp_path / "contexts" / "wn18rr-mini-static.jsonl")
    kg = build_kg(read_static_names(Path(WN)))
    texts = kg_texts(kg, descriptions=True).entities
    assert store.entity(kg.entity_labels[0]) == texts[0] and len(store.entities) == kg.num_entities
    log = (tmp_path / "wn18rr-mini" / "bi_encoder-static-s0" / "log.jsonl").read_text()
    assert '"reconstruction"' in log
