"""The auxiliary tasks over LLM-written contexts: context tables from a real store (GPT-4 summaries of the
FB15k-237N subset's entities, CP-KGC), the leak rule (only training triples), BERT's masking statistics, the
``reconstruction`` term of both encoder models and the ``contextualization`` term of the generative model
(gradients reach the encoder / LM, the loss falls), checkpoints, and the config errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill.checkpoint import load_checkpoint, load_model, save_checkpoint
from kgdistill.contexts.exchange import escape, import_contexts
from kgdistill.data import KG, build_kg, read_openke, read_static_names
from kgdistill.data.batching import Batch, both_directions, in_batch_candidates
from kgdistill.errors import ConfigError
from kgdistill.models import Vocab, build_model
from kgdistill.models.aux import ContextTexts, canonical, mask_tokens
from kgdistill.models.base import KGEModel
from kgdistill.objective import Objective
from kgdistill.plm import encoder_folder, plm_features
from kgdistill.plm.causal import lm_features
from kgdistill.plm.contexts import context_tokens, triple_keys
from kgdistill.types import TAIL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GPT4 = FIXTURES / "llm-text-mini" / "FB15k_mid2description_GPT4.txt"
QWEN = FIXTURES / "llm-text-mini" / "entity2sysnonyms_Qwen.txt"


@pytest.fixture(scope="module")
def fb_mini() -> KG:
    return build_kg(read_openke(FIXTURES / "fb15k237n-mini"))


def _own_triples(kg: KG) -> tuple[list[int], list[int]]:
    """Train rows and test rows whose head has a GPT-4 summary: 3 of each get a triple context."""
    with_text = {line.split("\t")[0] for line in GPT4.read_text(encoding="utf-8").splitlines()}
    rows = {
        split: [
            i
            for i, (h, _, _) in enumerate(kg.splits[split][:, :3].tolist())
            if kg.entity_labels[h] in with_text
        ][:3]
        for split in ("train", "test")
    }
    return rows["train"], rows["test"]


@pytest.fixture(scope="module")
def store(fb_mini: KG, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A context store of the subset: the real GPT-4 entity summaries (T->ED), plus triple contexts (T->TD) for
    three training and three test triples, each the head's GPT-4 summary (real text, keyed by the triple)."""
    folder = tmp_path_factory.mktemp("contexts")
    path = folder / "fb15k237n-mini.jsonl"
    import_contexts(GPT4, fb_mini, path)
    summaries = {}
    for line in GPT4.read_text(encoding="utf-8").splitlines():
        mid, text = line.split("\t", 1)
        summaries[mid] = text.removeprefix('"').removesuffix('"@en')
    train_rows, test_rows = _own_triples(fb_mini)
    lines = []
    for split, rows in (("train", train_rows), ("test", test_rows)):
        for i in rows:
            h, r, t = fb_mini.splits[split][i, :3].tolist()
            hl, rl, tl = (
                fb_mini.entity_labels[h],
                fb_mini.relation_labels[r],
                fb_mini.entity_labels[t],
            )
            lines.append(f"{hl}\t{rl}\t{tl}\t{escape(summaries[hl])}")
    triples = folder / "triples.tsv"
    triples.write_text("\n".join(lines) + "\n", encoding="utf-8")
    import_contexts(triples, fb_mini, path)
    return path


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(encoder_folder(None)), local_files_only=True)


# -- context tables --------------------------------------------------------------------------------------------


def test_context_tables_cover_the_graph_and_never_read_test_triples(
    fb_mini: KG, store: Path, tokenizer: Any
) -> None:
    ctx = context_tokens(fb_mini, tokenizer, store=str(store), max_length=32)
    train_rows, test_rows = _own_triples(fb_mini)
    train = fb_mini.splits["train"]
    E, R = fb_mini.num_entities, fb_mini.num_relations
    own = triple_keys(train[train_rows, 0], train[train_rows, 1], train[train_rows, 2], E, R)
    assert torch.equal(ctx.keys, own.sort().values)  # the three training triples, sorted
    assert ctx.report["ignored_triple_records"] == {"eval": len(test_rows), "unknown": 0}
    test = fb_mini.splits["test"]
    leaked = triple_keys(test[test_rows, 0], test[test_rows, 1], test[test_rows, 2], E, R)
    assert not torch.isin(leaked, ctx.keys).any()
    # entity contexts: exactly the entities the GPT-4 file names, tokenised and cut to the window
    named = {line.split("\t")[0] for line in GPT4.read_text(encoding="utf-8").splitlines()}
    has = [label in named for label in fb_mini.entity_labels]
    assert (ctx.entities.lengths > 0).tolist() == has
    assert int(ctx.entities.lengths.max()) == 32 and ctx.report["truncated"]["entities"] > 0
    # every training triple is counted once: own context, composed from entities, or none
    parts = ctx.report["train_triples"]
    assert parts["own"]["n"] == 3
    assert sum(p["n"] for p in parts.values()) == len(train)
    with_entity = torch.tensor(has)[train[:, 0]] | torch.tensor(has)[train[:, 2]]
    assert parts["from_entities"]["n"] == int(with_entity.sum()) - 3


def test_pieces_compose_head_and_tail_contexts_and_prefer_the_triples_own(
    fb_mini: KG, store: Path, tokenizer: Any
) -> None:
    ctx = context_tokens(fb_mini, tokenizer, store=str(store), max_length=32)
    texts = ContextTexts(ctx)
    train = fb_mini.splits["train"]
    train_rows, _ = _own_triples(fb_mini)
    lengths = ctx.entities.lengths
    both = ((lengths[train[:, 0]] > 0) & (lengths[train[:, 2]] > 0)).nonzero()[:, 0]
    composed = next(int(i) for i in both if int(i) not in train_rows)
    rows = torch.tensor([train_rows[0], composed])
    h, r, t = train[rows, 0], train[rows, 1], train[rows, 2]
    pieces, count = texts.pieces(h, r, t, kind=1)
    ids = [torch.cat([p[0][i][p[1][i]] for p in pieces]).tolist() for i in range(2)]
    own_row = int(texts.own_rows(h[:1], r[:1], t[:1])[0])
    assert ids[0] == ctx.triples.ids[own_row, : ctx.triples.lengths[own_row]].tolist()
    lh, lt = int(lengths[h[1]]), int(lengths[t[1]])
    tail_keep = min(lt, max(16, 32 - lh))
    expect = ctx.entities.ids[h[1], : 32 - tail_keep].tolist()[:lh]
    expect += ctx.entities.ids[t[1], :tail_keep].tolist()
    assert ids[1] == expect and count.tolist() == [len(ids[0]), len(ids[1])]
    # a reciprocal query reads its triple's context
    q = both_directions(train[rows], fb_mini.num_relations)
    back = canonical(q[2:], fb_mini.num_relations)
    assert all(torch.equal(a, b) for a, b in zip(back, (h, r, t), strict=True))


def test_a_store_of_another_dataset_or_a_missing_one_is_one_error(
    fb_mini: KG, tokenizer: Any, tmp_path: Path
) -> None:
    wn = build_kg(read_static_names(FIXTURES / "wn18rr-mini"))
    other = tmp_path / "wn.jsonl"
    import_contexts(QWEN, wn, other)
    with pytest.raises(ConfigError, match=r"model\.context\.store.*no context for any entity"):
        context_tokens(fb_mini, tokenizer, store=str(other))
    with pytest.raises(ConfigError, match=r"model\.context\.store.*no such context store"):
        context_tokens(fb_mini, tokenizer, store=str(tmp_path / "missing.jsonl"))


def test_masking_follows_bert(fb_mini: KG, store: Path, tokenizer: Any) -> None:
    """15% of the maskable tokens chosen; of those 80% the mask token, 10% random, 10% kept; nothing else
    touched (real context tokens, 40 draws)."""
    ctx = context_tokens(fb_mini, tokenizer, store=str(store), max_length=64)
    rows = ctx.entities.lengths > 0
    ids = ctx.entities.ids[rows].long()
    maskable = torch.arange(ids.shape[1])[None, :] < ctx.entities.lengths[rows, None]
    torch.manual_seed(0)
    chosen_n = masked_n = random_n = kept_n = total = 0
    for _ in range(40):
        out, chosen = mask_tokens(ids, maskable, mask_id=103, vocab_size=30522)
        assert not chosen[~maskable].any() and torch.equal(out[~maskable], ids[~maskable])
        assert chosen.any(1).all()  # every row with tokens has a target
        total += int(maskable.sum())
        chosen_n += int(chosen.sum())
        masked_n += int((out[chosen] == 103).sum())
        kept_n += int((out[chosen] == ids[chosen]).sum())
        random_n += int(((out[chosen] != 103) & (out[chosen] != ids[chosen])).sum())
    assert chosen_n / total == pytest.approx(0.15, abs=0.01)
    assert masked_n / chosen_n == pytest.approx(0.8, abs=0.02)
    assert random_n / chosen_n == pytest.approx(0.1, abs=0.015)
    assert kept_n / chosen_n == pytest.approx(0.1, abs=0.015)


# -- reconstruction ---------------------------------------------------------------------------------------------


def _encoder_model(
    name: str, kg: KG, folder: Path, store: Path, **context: Any
) -> tuple[KGEModel, Any]:
    features = plm_features(
        kg,
        encoder=str(folder),
        max_length=16,
        context={"store": str(store), "max_length": 32, **context},
        text={"descriptions": False},
    )
    vocab = Vocab(kg.num_entities, kg.num_relations)
    torch.manual_seed(0)
    return build_model({"name": name, "chunk_size": 512}, vocab, {"plm": features}), features


def _steps(
    model: KGEModel, q: torch.Tensor, cand: Any, task: str, steps: int, lr: float = 3e-3
) -> list[float]:
    """AdamW steps on one batch with the task alone, the masks fixed (same seed each step): its losses."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        torch.manual_seed(1)
        with model.auxiliary({task}):
            loss = model(q, cand).aux[task]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("name", ["bi_encoder", "cross_encoder"])
def test_reconstruction_trains_the_encoder(
    name: str, fb_mini: KG, store: Path, tiny_encoder_folder: Path
) -> None:
    model, _ = _encoder_model(name, fb_mini, tiny_encoder_folder, store)
    assert model.aux_tasks == {"reconstruction"}
    q = both_directions(fb_mini.splits["train"][:32], fb_mini.num_relations)
    cand = q[:, TAIL : TAIL + 1]
    model.train()
    assert model(q, cand).aux == {}  # not asked for: not computed
    torch.manual_seed(1)
    with model.auxiliary({"reconstruction", "contextualization"}):
        out = model(q, cand)
    assert set(out.aux) == {"reconstruction"}
    assert (
        5.0 < float(out.aux["reconstruction"].detach()) < 15.0
    )  # about ln(30522) = 10.3 for a random head
    out.aux["reconstruction"].backward()
    encoder = model.entities.encoder if name == "bi_encoder" else model.encoder
    words = encoder.model.get_input_embeddings().weight
    assert words.grad is not None and words.grad.abs().sum() > 0
    layer = next(p for n, p in encoder.model.named_parameters() if "attention" in n)
    assert layer.grad is not None and layer.grad.abs().sum() > 0
    model.zero_grad()
    losses = _steps(model, q, cand, "reconstruction", steps=8)
    assert losses[-1] < losses[0] - 1.0, losses


def test_reconstruction_in_an_objective_with_info_nce(
    fb_mini: KG, store: Path, tiny_encoder_folder: Path
) -> None:
    model, _ = _encoder_model("bi_encoder", fb_mini, tiny_encoder_folder, store, rows=8)
    objective = Objective.build(
        [{"loss": "info_nce"}, {"loss": "reconstruction", "weight": 0.5}],
        candidates=True,
        student=frozenset({"scores", "h", "r", "t", "reconstruction"}),
    )
    q = both_directions(fb_mini.splits["train"][:16], fb_mini.num_relations)
    cand, mask = in_batch_candidates(q)
    with model.auxiliary({"reconstruction"}):
        out = model(q, cand)
    objective.setup(out, {})
    loss, parts = objective(out, {}, Batch(q, cand, mask))
    assert set(parts) == {"info_nce", "reconstruction"}
    assert float(loss) == pytest.approx(
        float(parts["info_nce"]) + 0.5 * float(parts["reconstruction"]), rel=1e-5
    )


def test_a_model_without_contexts_is_refused_by_name(
    fb_mini: KG, tiny_encoder_folder: Path
) -> None:
    features = plm_features(fb_mini, encoder=str(tiny_encoder_folder), max_length=16)
    model = build_model(
        {"name": "bi_encoder"},
        Vocab(fb_mini.num_entities, fb_mini.num_relations),
        {"plm": features},
    )
    assert model.aux_tasks == frozenset()
    with pytest.raises(ConfigError, match=r"reads \['reconstruction'\].*model\.context"):
        Objective.build(
            [{"loss": "reconstruction"}],
            candidates=True,
            student=frozenset({"scores", "h", "r", "t"}),
        )


def test_checkpoint_carries_the_contexts_and_the_head(
    fb_mini: KG, store: Path, tiny_encoder_folder: Path, tmp_path: Path
) -> None:
    model, features = _encoder_model("cross_encoder", fb_mini, tiny_encoder_folder, store)
    with torch.no_grad():
        model.reconstruction.head.bias.add_(torch.randn_like(model.reconstruction.head.bias))
    meta = {
        "model": {"name": "cross_encoder", "kwargs": {}, "features": {"plm": features.meta()}},
        "id_maps": fb_mini.id_maps(),
        "time": fb_mini.time.to_dict(),
    }
    save_checkpoint(tmp_path / "m.safetensors", model=model, meta=meta)
    loaded = load_model(load_checkpoint(tmp_path / "m.safetensors"))
    q = both_directions(fb_mini.splits["train"][:8], fb_mini.num_relations)
    model.eval(), loaded.eval()
    for m in (model, loaded):
        torch.manual_seed(3)
        with m.auxiliary({"reconstruction"}), torch.no_grad():
            m.aux_value = float(m(q, q[:, TAIL : TAIL + 1]).aux["reconstruction"])
    assert loaded.aux_value == model.aux_value
    assert torch.equal(
        loaded.reconstruction.texts.triple_keys, model.reconstruction.texts.triple_keys
    )


# -- contextualization ------------------------------------------------------------------------------------------


def test_contextualization_writes_the_context_after_the_triple(
    fb_mini: KG, store: Path, tiny_lm_path: Path
) -> None:
    features = lm_features(
        fb_mini,
        lm=str(tiny_lm_path),
        max_length=40,
        context={"store": str(store), "max_length": 24},
        text={"descriptions": False},
    )
    torch.manual_seed(0)
    model = build_model(
        {"name": "generative"},
        Vocab(fb_mini.num_entities, fb_mini.num_relations),
        {"lm": features},
    )
    assert model.aux_tasks == {"contextualization"}
    train = fb_mini.splits["train"]
    train_rows, _ = _own_triples(fb_mini)
    h, r, t = (train[train_rows[:1], i] for i in range(3))
    entities, texts = model._texts()
    ids, mask, answer, count = texts.context_sequences(entities, model.contexts, h, r, None, t)
    row = int(model.contexts.own_rows(h, r, t)[0])
    own = features.contexts.triples.ids[row, : features.contexts.triples.lengths[row]].tolist()
    assert ids[0][answer[0].bool()].tolist() == [*own, features.special["eos"]]
    assert int(count[0]) == len(own)
    # the prompt before the context names the tail
    name = features.names.ids[t[0], : features.names.lengths[t[0]]].tolist()
    prompt = ids[0][mask[0] & ~answer[0].bool()].tolist()
    assert prompt[-len(features.special["suffix"]) - len(name) :][: len(name)] == name
    q = both_directions(train[:24], fb_mini.num_relations)
    cand = q[:, TAIL : TAIL + 1]
    model.train()
    with model.auxiliary({"contextualization"}):
        out = model(q, cand)
    value = out.aux["contextualization"]
    value.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.lm.parameters())
    model.zero_grad()
    losses = _steps(model, q, cand, "contextualization", steps=6, lr=2e-2)
    assert losses[-1] < losses[0] - 0.5, losses


def test_contexts_without_an_auxiliary_term_are_reported(
    fb_mini: KG, store: Path, tiny_encoder_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from kgdistill.train import _warn_unused_aux

    model, _ = _encoder_model("bi_encoder", fb_mini, tiny_encoder_folder, store)
    objective = Objective.build([{"loss": "info_nce"}], candidates=True)
    with caplog.at_level(logging.WARNING):
        _warn_unused_aux(model, [objective])
    assert "no stage's objective has that term" in caplog.text
