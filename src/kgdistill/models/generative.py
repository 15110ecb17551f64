"""The generative model: a causal LM that writes the answer entity's name (KG-S2S / GenKGC-style).

A query ``(h, r, ?, [tau])`` is the prompt ``head | relation [| time]`` inside the LM's chat frame (the
reciprocal relation's text for head queries), and a candidate's score is the LM's log-likelihood of the
candidate's name followed by the end-of-sequence token::

    s(q, t) = sum_i log p(name(t)_i | frame(text(h) | text(r) [| text(tau)]), name(t)_<i)
    (divided by the number of answer tokens with ``length_norm``)

Every ``(query, candidate)`` pair is one LM pass over prompt and answer (``chunk_size`` pairs at a time); the
vocabulary projection is applied to the answer positions only. :meth:`GenerativeLM.score_candidates` is its
natural interface (a re-ranker of a retriever's top-k, :func:`kgdistill.evaluate.evaluate_rerank`);
:meth:`GenerativeLM.score_all` works (``E`` passes per query) but is only practical on small graphs. Training is
teacher-forced cross-entropy on the true answer's name tokens (the ``generation`` loss term, which reads
:attr:`ModelOutput.generation`); the prompt's tokens are not in the loss. Entities with the same name get the
same score.
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F

from kgdistill.models.aux import ContextTexts, canonical, select_rows
from kgdistill.models.base import KGEModel, ModelOutput
from kgdistill.models.interactions import Interaction
from kgdistill.models.plm import EntityTexts, Piece, _cut, _piece, pack, register_query_tables
from kgdistill.models.representations import RelationEncoder
from kgdistill.plm.causal import LMFeatures, build_causal_lm
from kgdistill.types import HEAD, REL, TAIL, BoolTensor, FloatTensor, LongTensor

__all__ = ["GenerativeLM", "Likelihood"]


def _tokens(values: list[int], n: int, device: torch.device, kind: int) -> Piece:
    """The same tokens ``values`` in each of ``n`` rows: a piece ``(n, len(values))``."""
    ids = torch.tensor(values, dtype=torch.long, device=device).expand(n, len(values))
    return ids, torch.ones(ids.shape, dtype=torch.bool, device=device), kind


@functools.cache
def _cache_kwarg_of(forward: object) -> str:
    params = inspect.signature(forward).parameters  # type: ignore[arg-type]
    return "cache" if "cache" in params else "past_key_values"


def _cache_kwarg(model: torch.nn.Module) -> str:
    """The name of the key-value cache argument of a Hugging Face decoder's ``forward`` (``past_key_values``,
    ``cache`` from transformers 5.x on)."""
    return _cache_kwarg_of(type(model).forward)


class LMTexts(RelationEncoder):
    """Token tables of relations ``(2R, L_r)``, times ``(T, L_t)`` and answer names ``(E, L_n)`` (buffers), and
    the chat frame: the pieces of prompts and answers. No parameters."""

    def __init__(self, *, features: LMFeatures) -> None:
        super().__init__()
        register_query_tables(self, features)
        self.register_buffer("name_tokens", features.names.ids.clone())
        self.register_buffer("name_lengths", features.names.lengths.clone())

    def relation_pieces(
        self, r: LongTensor, tau: LongTensor | None
    ) -> tuple[list[Piece], LongTensor]:
        """``r, tau (B,)`` -> the relation (and `` | time``) pieces, and the tokens ``(B,)`` they and the chat
        frame take."""
        n, dev, sp = len(r), r.device, self.special
        rel = [_piece(self.rel_tokens, self.rel_lengths, r, 0)]
        used = self.rel_lengths[r].long() + len(sp["prefix"]) + len(sp["suffix"])
        if self.temporal:
            assert tau is not None, "a temporal model needs a time column"
            rel += [
                _tokens(sp["sep"], n, dev, 0),
                _piece(self.time_tokens, self.time_lengths, tau, 0),
            ]
            used = used + self.time_lengths[tau].long() + len(sp["sep"])
        return rel, used

    def sequences(
        self,
        entities: EntityTexts,
        h: LongTensor,
        r: LongTensor,
        tau: LongTensor | None,
        t: LongTensor,
    ) -> tuple[LongTensor, BoolTensor, LongTensor]:
        """``h, r, tau, t (N,)`` -> packed ``ids, mask, answer (N, L)``: ``prefix head | relation [| time]
        suffix name(t) eos``, right-padded; ``answer`` is 1 on the name and end tokens, 0 elsewhere.

        The head's text is cut to what the frame, separators, relation and time leave of the window."""
        return pack([*self.prompt_pieces(entities, h, r, tau), *self.answer_pieces(t)])

    def prompt_pieces(
        self, entities: EntityTexts, h: LongTensor, r: LongTensor, tau: LongTensor | None
    ) -> list[Piece]:
        """``h, r, tau (N,)`` -> the pieces of ``prefix head | relation [| time] suffix`` (the head cut to the
        room the rest leaves); they do not depend on the answer."""
        n, dev, sp = len(h), h.device, self.special
        rel, used = self.relation_pieces(r, tau)
        room = (self.max_length - used - len(sp["sep"])).clamp_min(0)
        return [
            _tokens(sp["prefix"], n, dev, 0),
            _cut(_piece(entities.tokens, entities.lengths, h, 0), room),
            _tokens(sp["sep"], n, dev, 0),
            *rel,
            _tokens(sp["suffix"], n, dev, 0),
        ]

    def answer_pieces(self, t: LongTensor) -> list[Piece]:
        """``t (N,)`` -> the pieces of ``name(t) eos`` (token type 1: the answer)."""
        return [
            _piece(self.name_tokens, self.name_lengths, t, 1),
            _tokens([self.special["eos"]], len(t), t.device, 1),
        ]

    def context_sequences(
        self,
        entities: EntityTexts,
        contexts: ContextTexts,
        h: LongTensor,
        r: LongTensor,
        tau: LongTensor | None,
        t: LongTensor,
    ) -> tuple[LongTensor, BoolTensor, LongTensor, LongTensor]:
        """``h, r, tau, t (N,)`` (original direction) -> packed ``ids, mask, answer (N, L)`` of ``prefix head |
        relation [| time] | name(t) suffix context eos``, ``answer`` 1 on the context and end tokens, and the
        context tokens of each row ``(N,)`` (0: none; its row only holds the end token as answer)."""
        n, dev, sp = len(h), h.device, self.special
        rel, used = self.relation_pieces(r, tau)
        used = used + self.name_lengths[t].long() + 2 * len(sp["sep"])
        room = (self.max_length - used).clamp_min(0)
        context, count = contexts.pieces(h, r, t, 1)
        ids, mask, answer = pack(
            [
                _tokens(sp["prefix"], n, dev, 0),
                _cut(_piece(entities.tokens, entities.lengths, h, 0), room),
                _tokens(sp["sep"], n, dev, 0),
                *rel,
                _tokens(sp["sep"], n, dev, 0),
                _piece(self.name_tokens, self.name_lengths, t, 0),
                _tokens(sp["suffix"], n, dev, 0),
                *context,
                _tokens([sp["eos"]], n, dev, 1),
            ]
        )
        return ids, mask, answer, count


class Likelihood(Interaction):
    """Marks the model as scoring pairs jointly (``kind = "joint"``): no query or entity vectors, so the vector
    scoring paths and an approximate top-k index do not apply."""

    kind = "joint"

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        raise TypeError("a generative model has no query vectors: it scores answers by likelihood")


class GenerativeLM(KGEModel):
    """See the module docstring.

    Args:
        features: the LM's config and weights and the graph's token tables (computed before the model).
        length_norm: score by the mean log-probability per answer token instead of the sum.
        chunk_size: ``(query, candidate)`` sequences per LM pass.
        shared_prompt: without gradients (evaluation, re-ranking, serving), pass each query's prompt through the
            LM once and let its candidates' answers reuse the prompt's keys and values
            (:meth:`shared_prompt_loglik`); with gradients every pair is one pass over prompt and answer.
    """

    #: why ``kgdistill export`` refuses this model (read by :func:`kgdistill.export.export_model`)
    export_refusal = (
        "it scores every (query, entity) pair by a causal language model's likelihood of the entity's name "
        "given the query's text, which the exported graphs and tables do not carry; use it as a re-ranker in "
        "Python (evaluate_rerank), or distil it into a KGE student and export that"
    )

    def __init__(
        self,
        *,
        features: LMFeatures,
        length_norm: bool = False,
        chunk_size: int = 64,
        shared_prompt: bool = True,
    ) -> None:
        super().__init__(
            entities=EntityTexts(
                tokens=features.entities, special={"pad": features.special["pad"]}
            ),
            relations=LMTexts(features=features),
            interaction=Likelihood(),
        )
        self.lm = build_causal_lm(features.config)
        if features.state is not None:
            self.lm.load_state_dict(features.state, strict=True)
        self.length_norm = length_norm
        self.chunk_size = chunk_size
        self.shared_prompt = shared_prompt
        self.contexts = None if features.contexts is None else ContextTexts(features.contexts)
        self.context_rows = None if features.contexts is None else features.contexts.rows

    @property
    def aux_tasks(self) -> frozenset[str]:
        """``contextualization`` when built with contexts (writing each triple's context)."""
        return frozenset() if self.contexts is None else frozenset({"contextualization"})

    def aux_loss(self, name: str, queries: LongTensor) -> FloatTensor:
        """``contextualization``: the mean negative log-likelihood of the context tokens (and each end token)
        of the batch's training triples given ``head | relation | tail``, teacher forced; triples without a
        context are left out (``model.context.rows`` bounds how many queries take part)."""
        if name != "contextualization" or self.contexts is None:
            return super().aux_loss(name, queries)
        entities, texts = self._texts()
        h, r, t = canonical(queries, self.contexts.num_relations)
        tau = self._tau(queries)
        _, count = self.contexts.pieces(h, r, t, 1)
        rows = select_rows(count, self.context_rows)
        if not len(rows):
            return self.lm.get_output_embeddings().weight.sum() * 0.0
        ids, mask, answer, _ = texts.context_sequences(
            entities, self.contexts, h[rows], r[rows], None if tau is None else tau[rows], t[rows]
        )
        hidden, target, _ = self._answer_states(ids, mask, answer)
        logits = self.lm.get_output_embeddings()(hidden).float()
        return F.cross_entropy(logits, target)

    def _texts(self) -> tuple[EntityTexts, LMTexts]:
        entities, relations = self.entities, self.relations
        assert isinstance(entities, EntityTexts) and isinstance(relations, LMTexts)
        return entities, relations

    def pair_loglik(self, queries: LongTensor, tails: LongTensor) -> tuple[FloatTensor, LongTensor]:
        """``queries (N, 3|4)`` and one tail each ``(N,)`` -> the summed log-probability of each answer ``(N,)``
        (float32) and its number of tokens ``(N,)``, in one LM pass."""
        entities, texts = self._texts()
        ids, mask, answer = texts.sequences(
            entities, queries[:, HEAD], queries[:, REL], self._tau(queries), tails
        )
        hidden, target, rows = self._answer_states(ids, mask, answer)
        logits = self.lm.get_output_embeddings()(hidden).float()  # (K, V)
        token_lp = logits.log_softmax(-1).gather(1, target[:, None])[:, 0]
        total = token_lp.new_zeros(len(ids)).index_add(0, rows, token_lp)
        return total, answer[:, 1:].sum(1)

    def _answer_states(
        self, ids: LongTensor, mask: BoolTensor, answer: LongTensor
    ) -> tuple[FloatTensor, LongTensor, LongTensor]:
        """One LM pass over packed ``ids, mask, answer (N, L)``: the hidden states that predict the answer
        tokens ``(K, D)``, those tokens ``(K,)`` and their rows ``(K,)``."""
        positions = (mask.long().cumsum(1) - 1).clamp_min(0)
        hidden = self.lm.base_model(
            input_ids=ids, attention_mask=mask.long(), position_ids=positions, use_cache=False
        )[0]
        target = answer[:, 1:].bool()  # position i predicts token i + 1
        return hidden[:, :-1][target], ids[:, 1:][target], target.nonzero()[:, 0]

    def shared_prompt_loglik(
        self, queries: LongTensor, candidates: LongTensor
    ) -> tuple[FloatTensor, LongTensor]:
        """``queries (B, 3|4)``, ``candidates (B, C)`` -> summed answer log-probabilities and token counts, both
        ``(B, C)``: one LM pass over the ``B`` prompts, then one over the ``B * C`` answers that attend to
        their query's cached prompt (keys and values repeated per candidate). The same numbers as
        :meth:`pair_loglik` up to float rounding, for a fraction of the work when the prompt is longer than the
        answers."""
        entities, texts = self._texts()
        b, c = candidates.shape
        dev = candidates.device
        p_ids, p_mask, _ = pack(
            texts.prompt_pieces(entities, queries[:, HEAD], queries[:, REL], self._tau(queries))
        )
        p_len = p_mask.sum(1)  # (B,) the valid tokens lead each row
        width = p_ids.shape[1]
        from transformers import DynamicCache

        cache = DynamicCache()  # given, not made by the model: a Cache object back on every version
        kwarg = _cache_kwarg(self.lm.base_model)
        out = self.lm.base_model(
            input_ids=p_ids,
            attention_mask=p_mask.long(),
            position_ids=torch.arange(width, device=dev).expand(b, -1),
            use_cache=True,
            **{kwarg: cache},
        )
        # (B, D): the last prompt state of each query, which predicts its answers' first token
        first = out[0][torch.arange(b, device=dev), p_len - 1]
        cache.batch_repeat_interleave(c)
        a_ids, a_mask, _ = pack(texts.answer_pieces(candidates.reshape(-1)))  # (B * C, La)
        n, la = a_ids.shape
        hidden = self.lm.base_model(
            input_ids=a_ids,
            attention_mask=torch.cat([p_mask.repeat_interleave(c, 0), a_mask], 1).long(),
            position_ids=p_len.repeat_interleave(c)[:, None] + torch.arange(la, device=dev),
            use_cache=True,
            **{kwarg: cache},
        )[0]
        states = torch.cat([first.repeat_interleave(c, 0)[:, None], hidden[:, :-1]], 1)
        logits = self.lm.get_output_embeddings()(states[a_mask]).float()  # (K, V)
        token_lp = logits.log_softmax(-1).gather(1, a_ids[a_mask][:, None])[:, 0]
        total = token_lp.new_zeros(n).index_add(0, a_mask.nonzero()[:, 0], token_lp)
        return total.view(b, c), a_mask.sum(1).view(b, c)

    def loglik(self, queries: LongTensor, candidates: LongTensor) -> tuple[FloatTensor, LongTensor]:
        """``queries (B, 3|4)``, ``candidates (B, C)`` -> summed answer log-probabilities and token counts,
        both ``(B, C)``, ``chunk_size`` pairs per pass (:meth:`shared_prompt_loglik` without gradients)."""
        b, c = candidates.shape
        self._tau(queries)  # a temporal model without a time column fails here, whatever C is
        if b * c == 0:
            zeros = torch.zeros(b, c, device=candidates.device)
            return zeros, zeros.long()
        if self.shared_prompt and not torch.is_grad_enabled():
            step = max(self.chunk_size // c, 1)  # queries per pass: about chunk_size pairs
            parts = [
                self.shared_prompt_loglik(queries[i : i + step], candidates[i : i + step])
                for i in range(0, b, step)
            ]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        flat = torch.arange(b * c, device=candidates.device)
        parts = [
            self.pair_loglik(queries[idx // c], candidates[idx // c, idx % c])
            for idx in flat.split(self.chunk_size)
        ]
        return torch.cat([p[0] for p in parts]).view(b, c), torch.cat([p[1] for p in parts]).view(
            b, c
        )

    def _score(self, total: FloatTensor, count: LongTensor) -> FloatTensor:
        return total / count.clamp_min(1) if self.length_norm else total

    def score_candidates(self, queries: LongTensor, candidates: LongTensor) -> FloatTensor:
        """``queries (B, 3|4)``, ``candidates (B, C)`` ids -> log-likelihoods ``(B, C)``."""
        return self._score(*self.loglik(queries, candidates))

    def score_all(self, queries: LongTensor) -> FloatTensor:
        """Every entity as the answer: ``(B, 3|4) -> (B, E)``; ``B * E`` LM passes (small graphs only)."""
        entities, _ = self._texts()
        n = entities.tokens.shape[0]
        return self.score_candidates(
            queries, torch.arange(n, device=queries.device).expand(len(queries), n)
        )

    def score_hrt(self, facts: LongTensor) -> FloatTensor:
        """Score of each fact's own tail: ``(B, 3|4) -> (B,)``."""
        return self.score_candidates(facts, facts[:, TAIL : TAIL + 1])[:, 0]

    def forward(self, queries: LongTensor, candidates: LongTensor | None = None) -> ModelOutput:
        """Score ``candidates (B, C)`` or all entities (``None``).

        Returns:
            :class:`ModelOutput` with ``scores (B, C)`` and ``generation (B,)``: the mean negative
            log-likelihood per token of each query's true answer (teacher forced; read from the first column
            when it holds the true tail, as sampled and in-batch candidates do, else one more pass).
        """
        tails = queries[:, TAIL]
        if candidates is None:
            candidates = torch.arange(self._texts()[0].tokens.shape[0], device=queries.device)
            candidates = candidates.expand(len(queries), -1)
            total, count = self.loglik(queries, candidates)
            true_total, true_count = (
                total.gather(1, tails[:, None])[:, 0],
                count.gather(1, tails[:, None])[:, 0],
            )
        else:
            total, count = self.loglik(queries, candidates)
            if candidates.shape[1] and bool((candidates[:, 0] == tails).all()):
                true_total, true_count = total[:, 0], count[:, 0]
            else:
                true_total, true_count = self.pair_loglik(queries, tails)
        generation = -true_total / true_count.clamp_min(1)
        return ModelOutput(
            scores=self._score(total, count),
            generation=generation,
            aux=self.aux_losses(queries),
        )

    def encode(self, queries: LongTensor) -> tuple[FloatTensor, FloatTensor]:
        raise TypeError(
            "a generative model has no query vectors: it scores answers by likelihood (score_candidates)"
        )
