"""The generative re-ranker with the shared prompt against one LM pass per (query, candidate), side by side.

Loads a trained generative run, scores the same random queries x candidates both ways on one thread (best of 2
after a warm-up), and reports ms per query, the speed-up, the largest score difference and whether the candidate
order is the same. Writes ``results/shared_prompt_speed.{json,md}``.

    python benchmarks/shared_prompt_speed.py --run benchmarks/work/plm-contexts/fb15k237n/generative-descriptions-s0
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from _common import REPO, markdown_table, write_script_result
from kgdistill.checkpoint import load_checkpoint, load_model


def _timed(model: torch.nn.Module, q: torch.Tensor, cand: torch.Tensor, shared: bool) -> tuple:
    model.shared_prompt = shared
    with torch.inference_mode():
        model.score_candidates(q[:1], cand[:1])
        best, scores = float("inf"), None
        for _ in range(2):
            t0 = time.perf_counter()
            scores = model.score_candidates(q, cand)
            best = min(best, time.perf_counter() - t0)
    return scores, 1000 * best / len(q)


@click.command()
@click.option("--run", required=True, help="A finished generative run folder.")
@click.option("--queries", default=8, show_default=True)
@click.option("--candidates", default=10, show_default=True)
@click.option("--out", default=str(REPO / "benchmarks" / "results"))
def main(run: str, queries: int, candidates: int, out: str) -> None:
    torch.set_num_threads(1)
    model = load_model(load_checkpoint(Path(run) / "best.safetensors")).eval()
    vocab = load_checkpoint(Path(run) / "best.safetensors").vocab
    g = torch.Generator().manual_seed(0)
    q = torch.stack(
        [
            torch.randint(vocab.num_entities, (queries,), generator=g),
            torch.randint(2 * vocab.num_relations, (queries,), generator=g),
            torch.randint(vocab.num_entities, (queries,), generator=g),
        ],
        1,
    )
    cand = torch.randint(vocab.num_entities, (queries, candidates), generator=g)
    shared, ms_shared = _timed(model, q, cand, True)
    pairs, ms_pairs = _timed(model, q, cand, False)
    row = {
        "queries x candidates": f"{queries} x {candidates}",
        "shared prompt (ms / query)": round(ms_shared, 1),
        "one pass per pair (ms / query)": round(ms_pairs, 1),
        "speed-up": round(ms_pairs / ms_shared, 2),
        "max |score difference|": float((shared - pairs).abs().max()),
        "same order": bool((shared.argsort(1) == pairs.argsort(1)).all()),
    }
    import sys

    def markdown(doc: dict) -> str:
        return (
            "# Generative re-ranking: shared prompt vs one pass per pair\n\n"
            f"`{doc['command']}`, one thread, {doc['machine'].get('cpu')}\n\n"
            + markdown_table(doc["rows"])
        )

    text = write_script_result(
        Path(out),
        "shared_prompt_speed",
        "benchmarks/shared_prompt_speed.py",
        sys.argv[1:],
        {"rows": [row]},
        markdown,
    )
    click.echo(text)


if __name__ == "__main__":
    main()
