"""PLM link prediction with and without LLM-written contexts (contextualization distillation, seed 001).

For each dataset (FB15k-237N, WN18RR), PLM model (``bi_encoder``, ``cross_encoder``, ``generative``), text source
and seed, one run of ``kgdistill train`` from the shipped config (``configs/plm``) with the profile's budget
(``benchmarks/specs/plm-contexts.yaml``):

* ``names``: entity names only; ``descriptions``: the dataset's own descriptions (the "static corpus" baseline);
* each LLM source (GPT-4, GPT-3.5, Llama-2 summaries of FB15k-237N's entities and Qwen synonyms of WN18RR's
  synsets from ``llm-text/CP-KGC``, imported into context stores; ``--ours STORE`` adds a store of our own
  generation): the descriptions plus the auxiliary task over the contexts (``reconstruction`` for the encoders,
  ``contextualization`` for the generative model, weight ``aux_weight``);
* ``static`` (asked for by name, ``--sources static``): the same auxiliary task over the dataset's own
  descriptions, the control that tells the LLM contexts' part from the extra masked-token training.

The bi-encoder ranks every entity on the test split (its first ``test_facts`` facts in the cpu profile; filtered,
realistic ties); the cross-encoder and the
generative model re-rank the top ``k`` of the same seed's bi-encoder (``descriptions``) on the test split's first
``queries`` facts, and the bi-encoder's own metrics on those facts are reported beside them. Every row gives the
parameters, the training time and the time per query (one thread for the bi-encoder's top-10 over all
entities; a re-ranker's: the retriever's top-k re-ranked, for one query). Runs resume and finished ones are
reused.

    python benchmarks/plm_contexts.py --datasets fb15k237n --models bi_encoder
    python benchmarks/plm_contexts.py --profile gpu --encoder /models/bert-base-uncased   # the full protocol

Writes ``benchmarks/results/plm_contexts.{json,md,png}``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
import yaml

from _common import (
    REPO,
    NothingFinished,
    earlier_results,
    friendly_errors,
    machine_info,
    markdown_table,
    setup_logging,
    write_script_result,
)
from _latency import rerank_latency_ms, single_query_latency_ms
from _plm_fusion import fused_row, reranker_of
from _plm_kge import kge_rows
from _plm_kge import result_row as _row
from kgdistill.api import ensure_run, evaluate_run
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.contexts.exchange import import_contexts
from kgdistill.data import load_kg
from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text
from kgdistill.runs import finished

log = logging.getLogger("plm_contexts")

SPEC = REPO / "benchmarks" / "specs" / "plm-contexts.yaml"
WORK = REPO / "benchmarks" / "work" / "plm-contexts"
MODELS = ("bi_encoder", "cross_encoder", "generative")
CONFIGS = {
    "bi_encoder": "bi_encoder-wn18rr.yaml",
    "cross_encoder": "cross_encoder-wn18rr.yaml",
    "generative": "generative-fb15k237n.yaml",
}
AUX = {
    "bi_encoder": "reconstruction",
    "cross_encoder": "reconstruction",
    "generative": "contextualization",
}
#: published MRR without contexts (BERT-base SimKGC, KG-S2S with T5-base), for the table's note
PUBLISHED = {
    ("bi_encoder", "wn18rr"): 0.666,
    ("bi_encoder", "fb15k237"): 0.336,
    ("generative", "wn18rr"): 0.575,
    ("generative", "fb15k237n"): 0.354,
}


def _root(data_root: str | None) -> Path:
    root = data_root or os.environ.get("KGDISTILL_DATA")
    if not root:
        raise ConfigError("the datasets' folder is needed: pass --data-root or set KGDISTILL_DATA")
    return Path(root)


#: the control source: reconstruction over the dataset's own descriptions (no LLM), to tell the contexts' part
#: from the extra masked-token training
STATIC = "static"


def _static_file(dataset: str, work: Path, data_root: Path) -> Path:
    """The dataset's own entity texts (``name: description``) as an exchange file (``label<TAB>text``)."""
    from kgdistill.contexts.exchange import escape
    from kgdistill.text import kg_texts

    kg = load_kg(dataset, root=str(data_root))
    texts = kg_texts(kg, descriptions=True).entities
    path = work / "contexts" / f"{Path(dataset).name}-static.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{label}\t{escape(text)}\n" for label, text in zip(kg.entity_labels, texts, strict=True)
    ]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _store(dataset: str, source: str, file: Path | None, work: Path, data_root: Path) -> Path:
    """The context store of ``source`` for ``dataset``, imported from ``file`` the first time (``static``: from
    the dataset's own descriptions)."""
    path = work / "contexts" / f"{Path(dataset).name}-{source}.jsonl"
    if not path.is_file():
        if file is None:
            file = _static_file(dataset, work, data_root)
        if not file.is_file():
            raise ConfigError(f"no context file for source '{source}': {file} does not exist")
        kg = load_kg(dataset, root=str(data_root))
        report = import_contexts(file, kg, path)
        log.info("imported %s: %d contexts, coverage %s", file.name, report.added, report.coverage)
    return path


def run_config(
    model: str,
    dataset: str,
    source: str,
    seed: int,
    budget: dict[str, Any],
    *,
    store: Path | None,
    aux_weight: float,
    eval_max_queries: int,
    encoder: str | None,
    lm: str | None,
    device: str,
) -> dict[str, Any]:
    """The run config of one row: the shipped config with the dataset, source, seed and budget."""
    cfg = yaml.safe_load((REPO / "configs" / "plm" / CONFIGS[model]).read_text())
    cfg = copy.deepcopy(cfg)
    cfg["name"] = f"{model}-{dataset}-{source}-s{seed}"
    cfg["seed"] = seed
    cfg["data"] = {"name": dataset}
    m = cfg["model"]
    m["max_length"] = budget["max_length"]
    m["text"] = {"descriptions": source != "names"}
    if model == "generative":
        m["lm"] = lm
    else:
        m["encoder"] = encoder
    if store is not None:
        m["context"] = {
            "store": str(store),
            "max_length": budget["context_length"],
            "rows": budget["rows"],
        }
    stage = cfg["stages"][0]
    stage["epochs"] = budget["epochs"]
    if store is not None:
        stage["objective"].append({"loss": AUX[model], "weight": aux_weight})
    t = cfg["train"]
    t.update(
        batch_size=budget["batch_size"],
        epoch_queries=budget["epoch_queries"],
        eval_every=budget["epochs"],  # validate once, at the end
        patience=0,
        eval_max_queries=eval_max_queries,
        progress=False,
        device=device,
    )
    if budget.get("test_facts"):
        cfg["eval"]["max_queries"] = budget["test_facts"]
    if "negatives" in budget:
        t["negatives"] = budget["negatives"]
    if model == "generative":
        t["lr"] = budget["lr"]
    else:
        t["param_groups"][0]["lr"] = budget["lr"]
    if isinstance(t.get("scheduler"), dict):
        steps = budget["epochs"] * -(-(budget["epoch_queries"] or 10**9) // budget["batch_size"])
        t["scheduler"]["warmup"] = min(t["scheduler"].get("warmup", 0), max(steps // 10, 1))
    return cfg


def _latency_ms(run: Path) -> float:
    """One thread, one query: top-10 over all entities (the bi-encoder's query encoding included); measured
    once per run and kept in its ``latency.json``."""
    cached = run / "latency.json"
    if cached.is_file():
        return float(json.loads(cached.read_text())["ms_per_query"])
    ms = _measure_latency_ms(run)
    atomic_write_text(cached, json.dumps({"ms_per_query": ms, "threads": 1}) + "\n")
    return ms


def _measure_latency_ms(run: Path) -> float:
    ckpt = load_checkpoint(run / "best.safetensors")
    model = load_model(ckpt).eval()
    query = torch.tensor([[0, 0, 0]])
    with torch.inference_mode():
        model.entities.table()  # the entity vectors are encoded once per evaluation, not per query
    return single_query_latency_ms(model, query, repeats=20)


@functools.lru_cache(maxsize=1)
def _encoded(run: Path) -> Any:
    """``run``'s bi-encoder with every entity encoded (kept for the next re-ranker of the same retriever)."""
    model = load_model(load_checkpoint(run / "best.safetensors")).eval()
    with torch.inference_mode():
        model.entities.table()
    return model


#: the re-rankers' scoring code a kept time per query was measured with (2: the generative model's prompt passed
#: once per query); a time measured by another is measured again
SCORING = 2


def _rerank_latency(run: Path, retriever: Path, k: int) -> float:
    """One thread, one query: the retriever's top-``k`` over all entities, re-ranked by ``run``'s model (both
    loaded and the entity vectors encoded beforehand); measured once per (run, retriever, k), kept in the
    run's ``latency.json``."""
    cached = run / "latency.json"
    key = {"retriever": str(retriever.resolve()), "k": k, "threads": 1, "scoring": SCORING}
    if cached.is_file():
        doc = json.loads(cached.read_text())
        if all(doc.get(x) == v for x, v in key.items()):
            return float(doc["ms_per_query"])
    second = load_model(load_checkpoint(run / "best.safetensors")).eval()
    ms = rerank_latency_ms(_encoded(retriever), second, torch.tensor([[0, 0, 0]]), k=k)
    atomic_write_text(cached, json.dumps({"ms_per_query": ms, **key}) + "\n")
    return ms


def run_benchmark(
    *,
    spec: dict[str, Any],
    datasets: list[str],
    models: list[str],
    sources: list[str] | None,
    seeds: list[int],
    profile: str,
    encoder: str | None,
    lm: str | None,
    ours: str | None,
    work: Path,
    data_root: Path,
    device: str,
    train: bool = True,
    kge: bool = False,
) -> list[dict[str, Any]]:
    """The rows of every (dataset, seed, model, source) asked for, training what is missing (``train``; else
    only the finished runs are tabulated); with ``kge``, the ComplEx teacher and students of each seed too
    (:mod:`_plm_kge`), distilled from the bi-encoder of the first LLM source asked for."""
    if profile not in spec["profiles"]:
        raise ConfigError(f"--profile: '{profile}' is not one of {sorted(spec['profiles'])}")
    prof = spec["profiles"][profile]
    rows: list[dict[str, Any]] = []
    for dataset in datasets:
        llm: dict[str, Path | None] = {
            k: data_root / v for k, v in spec["sources"].get(dataset, {}).items()
        }
        if ours:
            llm["ours"] = Path(ours)
        if sources and STATIC in sources:
            llm[STATIC] = None  # asked for by name only: the control, not one of the default rows
        wanted = sources or ["names", "descriptions", *llm]
        for seed in seeds:
            retriever: Path | None = None
            for model in ["bi_encoder", *[m for m in models if m != "bi_encoder"]]:
                for source in wanted if model in models else ["descriptions"]:
                    if source not in ("names", "descriptions") and source not in llm:
                        raise ConfigError(f"--sources: no '{source}' contexts for {dataset}")
                    store = (
                        _store(dataset, source, llm[source], work, data_root)
                        if source in llm
                        else None
                    )
                    cfg = run_config(
                        model,
                        dataset,
                        source,
                        seed,
                        prof[model],
                        store=store,
                        aux_weight=float(spec["aux_weight"]),
                        eval_max_queries=int(prof["eval_max_queries"]),
                        encoder=encoder,
                        lm=lm,
                        device=device,
                    )
                    run = work / Path(dataset).name / f"{model}-{source}-s{seed}"
                    if model != "bi_encoder":
                        # ranking every entity costs one pass per pair: validation and the final test
                        # re-rank the bi-encoder's top-k instead
                        if retriever is None:  # --finished-only without the retriever's run
                            continue
                        cfg["eval"].update(
                            retriever=str(retriever),
                            rerank_k=int(prof["rerank"]["k"]),
                            max_queries=prof["rerank"]["queries"],
                        )
                    if not train and not finished(run):
                        continue
                    metrics = ensure_run(cfg, run)
                    if model == "bi_encoder":
                        if source == "descriptions":
                            retriever = run
                        if kge and source == next((x for x in wanted if x in llm), None):
                            rows.extend(
                                kge_rows(
                                    dataset, seed, run, source, prof["kge"], work, device, train
                                )
                            )
                        if model in models:
                            row = _row(model, dataset, source, seed, metrics, run)
                            row["ms_per_query"] = round(_latency_ms(run), 3)
                            rows.append(row)
                        continue
                    assert retriever is not None
                    row, ref = _rerank_rows(model, dataset, source, seed, metrics, run, retriever)
                    rows.append(row)
                    rows.append(fused_row(row, run, retriever, metrics["protocol"]["facts"]))
                    if not any(r["model"] == ref["model"] and r["seed"] == seed for r in rows):
                        rows.append(ref)  # the retriever's row once per re-ranker and seed
    return rows


def _rerank_rows(
    model: str,
    dataset: str,
    source: str,
    seed: int,
    metrics: dict[str, Any],
    run: Path,
    retriever: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The re-ranker's row (its run's own test metrics: the retriever's top-k re-ranked on the split's first
    facts) and the retriever's row on the same facts; the time per query: :func:`_rerank_latency`."""
    row = _row(model, dataset, source, seed, metrics, run)
    rerank = metrics["protocol"]["rerank"]
    row["rerank_k"] = rerank["k"]
    row["ms_per_query"] = round(_rerank_latency(run, retriever, int(rerank["k"])), 1)
    base = evaluate_run(retriever, max_queries=metrics["protocol"]["facts"], progress=False)
    ref = _row("bi_encoder", dataset, "descriptions", seed, base.to_dict(), retriever)
    ref["model"] = f"bi_encoder (retriever of {model})"
    ref["ms_per_query"] = None
    return row, ref


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["model"], r["source"]), []).append(r)
    out = []
    for (dataset, model, source), rs in groups.items():
        out.append(
            {
                "dataset": dataset,
                "model": model,
                "text": source,
                "seeds": len(rs),
                "queries": rs[0]["queries"],
                "MRR": _mean_std([r["mrr"] for r in rs]),
                "H@1": _mean_std([r["hits@1"] for r in rs]),
                "H@3": _mean_std([r["hits@3"] for r in rs]),
                "H@10": _mean_std([r["hits@10"] for r in rs]),
                "params (M)": f"{rs[0]['parameters'] / 1e6:.1f}",
                "train (s)": f"{statistics.mean(r['train_seconds'] or 0 for r in rs):.0f}",
                "ms / query": (
                    f"{statistics.mean(r['ms_per_query'] for r in rs):.1f}"
                    if rs[0]["ms_per_query"] is not None
                    else None
                ),
                "retriever weight": (
                    ", ".join(f"{r['rerank_mix']:.2f}" for r in rs)
                    if "rerank_mix" in rs[0]
                    else None
                ),
            }
        )
    return out


def _markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# PLM link prediction with and without LLM-written contexts",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {doc['machine']['cpu']}, {doc['machine']['threads']} threads, "
        f"CUDA: {doc['machine']['cuda'] or 'none'}, torch {doc['machine']['torch']}; {doc['date']}  ",
        f"Profile: `{doc['profile']}` (benchmarks/specs/plm-contexts.yaml): {doc['budget_note']}",
        "",
        "Filtered ranks with realistic ties, MRR and Hits in percent (mean ± std over the seeds). `text`: "
        "`names` = entity names only, `descriptions` = the dataset's own descriptions (static corpus), any other "
        "= the descriptions plus the auxiliary task over that LLM's contexts (reconstruction / "
        f"contextualization, weight {doc['aux_weight']}). The bi-encoder ranks all entities on the test "
        "split (`queries` = both directions of its facts); a re-ranker re-ranks the bi-encoder's top-k on "
        "the split's first facts, next to the bi-encoder's own numbers on those facts. `ms / query`: one "
        "thread, models loaded and entity vectors encoded beforehand: a top-10 over all entities "
        "(bi-encoder), or the bi-encoder's top-k re-ranked by the model (re-rankers). `<re-ranker> + "
        "retriever`: the re-ranker's and the bi-encoder's scores over the top-k fused, "
        "`(1 - w) log_softmax(re-ranker) + w log_softmax(bi-encoder)`, with the weight `w` (one per seed) "
        "chosen on the validation split's first facts (a grid of step 0.05; benchmarks/_plm_fusion.py).",
        "",
        markdown_table(_table(doc["rows"])).rstrip(),
        "",
        "Published (BERT-base / T5-base, no contexts, full training): SimKGC WN18RR 66.6, FB15k-237 33.6; "
        "KG-S2S WN18RR 57.5, FB15k-237N 35.4.",
        "",
    ]
    # rows kept from earlier calls (other datasets): their own command and machine
    for ds, src in sorted(doc.get("sources", {}).items()):
        if src.get("command") != doc["command"]:
            lines.append(
                f"Rows of {ds}: `{src.get('command')}` ({src.get('threads')} threads, "
                f"torch {src.get('torch')})  "
            )
        for e in src.get("earlier", []):
            lines.append(
                f"Earlier rows of {ds} (other seeds, models or sources, same settings): "
                f"`{e.get('command')}` ({e.get('threads')} threads, torch {e.get('torch')})  "
            )
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [r for r in _table(rows) if r["model"] in MODELS]
    if not table:
        return
    panels = sorted({(r["dataset"], r["model"]) for r in table})
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], panels, strict=True):
        rs = [r for r in table if (r["dataset"], r["model"]) == (dataset, model)]
        values = [float(r["MRR"].split(" ")[0]) for r in rs]
        ax.bar([r["text"] for r in rs], values, color="tab:blue")
        ax.set_title(f"{model}, {dataset}", fontsize=9)
        ax.set_ylabel("test MRR (%)")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@click.command()
@click.option("--datasets", multiple=True, default=("fb15k237n", "wn18rr"), show_default=True)
@click.option("--models", multiple=True, type=click.Choice(MODELS), default=MODELS)
@click.option(
    "--sources", multiple=True, help="Text sources (default: names, descriptions, every LLM's)."
)
@click.option("--seeds", multiple=True, type=int, default=(0,), show_default=True)
@click.option("--profile", default="cpu", show_default=True, help="A budget of the spec: cpu, gpu.")
@click.option("--encoder", default=None, help="A local encoder folder (default: packaged MiniLM).")
@click.option("--lm", default=None, help="A local causal-LM folder (default: packaged SmolLM2).")
@click.option(
    "--ours", default=None, help="A context store of our own generation (a source 'ours')."
)
@click.option("--device", default="auto", show_default=True)
@click.option("--work", default=str(WORK), help="Run folders.")
@click.option("--out", default=str(REPO / "benchmarks" / "results"), help="Result files.")
@click.option("--data-root", default=None, help="The datasets' folder (default: $KGDISTILL_DATA).")
@click.option(
    "--finished-only", is_flag=True, help="Train nothing: tabulate the finished runs asked for."
)
@click.option(
    "--kge",
    is_flag=True,
    help="Add a ComplEx teacher and small ComplEx students distilled from the bi-encoder (and the teacher).",
)
@click.option("-v", "--verbose", is_flag=True)
def main(
    datasets: tuple[str, ...],
    models: tuple[str, ...],
    sources: tuple[str, ...],
    seeds: tuple[int, ...],
    profile: str,
    encoder: str | None,
    lm: str | None,
    ours: str | None,
    device: str,
    work: str,
    out: str,
    data_root: str | None,
    finished_only: bool,
    kge: bool,
    verbose: bool,
) -> None:
    """PLM models x text sources (names, descriptions, + LLM contexts) on FB15k-237N and WN18RR (resumable)."""
    setup_logging(verbose)
    with friendly_errors():
        spec = yaml.safe_load(SPEC.read_text())
        root = _root(data_root)
        rows = run_benchmark(
            spec=spec,
            datasets=list(datasets),
            models=list(models),
            sources=list(sources) or None,
            seeds=list(seeds),
            profile=profile,
            encoder=encoder,
            lm=lm,
            ours=ours,
            work=Path(work),
            data_root=root,
            device=device,
            train=not finished_only,
            kge=kge,
        )
        if not rows:
            raise NothingFinished(
                f"no finished run under {work}" if finished_only else "no row was asked for"
            )
        budget = spec["profiles"][profile]
        note = ", ".join(
            f"{m}: {b['epochs']} epochs of {b['epoch_queries'] or 'all'} queries"
            for m, b in budget.items()
            if isinstance(b, dict) and "epochs" in b
        )
        out_dir = Path(out)
        argv = click.get_current_context().args or _argv()
        call = Call(
            datasets=list(datasets),
            models=list(models),
            sources=list(sources) or None,
            seeds=list(seeds),
            kge=kge,
            settings={
                ds: {
                    f: settings_digest(spec, profile, ds, f, encoder=encoder, lm=lm, ours=ours)
                    for f in (WHOLE, *FAMILIES)
                }
                for ds in datasets
            },
        )
        rows, sources = merged_rows(out_dir, call, rows, argv)
        text = write_script_result(
            out_dir,
            "plm_contexts",
            "benchmarks/plm_contexts.py",
            argv,
            {
                "profile": profile,
                "budget": budget,
                "budget_note": note,
                "aux_weight": spec["aux_weight"],
                "published": {f"{m}/{d}": v for (m, d), v in PUBLISHED.items()},
                "rows": rows,
                "sources": sources,
            },
            _markdown,
        )
        _plot(rows, out_dir / "plm_contexts.png")
    click.echo(text)


@dataclass
class Call:
    """What one call of the benchmark makes: the cells it owns in the result file, and each dataset's
    ``settings``: the digest of each row family and of everything (``*``; :func:`settings_digest`)."""

    datasets: list[str]
    models: list[str]
    sources: list[str] | None  # None: every source of the dataset
    seeds: list[int]
    kge: bool
    settings: dict[str, dict[str, str]]

    def covers(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` is one of this call's cells (then only this call's own row of it may stand)."""
        family = _family(row["model"])
        if row["dataset"] not in self.datasets or row["seed"] not in self.seeds:
            return False
        if family == "kge":
            return self.kge
        if family not in self.models:
            return False
        if family != row["model"] and reranker_of(row["model"]) is None:
            return True  # a retriever's row: made once per re-ranker and seed, whatever the sources
        return self.sources is None or row["source"] in self.sources


def _family(model: str) -> str:
    """The PLM model a row belongs to (a retriever's row: its re-ranker's), or ``kge`` (the KGE rows)."""
    if model in MODELS:
        return model
    fused = reranker_of(model)
    if fused is not None:
        return fused
    prefix = "bi_encoder (retriever of "
    if model.startswith(prefix):
        return model[len(prefix) : -1]
    return "kge"


FAMILIES = (*MODELS, "kge")
WHOLE = "*"  # the digest of every setting (result files of before the per-family digests)


def _needs(family: str) -> set[str]:
    """The profile's model blocks that a family's rows depend on: its own, the bi-encoder's (the re-rankers'
    retriever, the KGE students' teacher), ``rerank`` for the re-rankers."""
    if family == WHOLE:
        return {*FAMILIES, "rerank"}
    return {"bi_encoder", family} | (
        {"rerank"} if family in ("cross_encoder", "generative") else set()
    )


def settings_digest(
    spec: dict[str, Any],
    profile: str,
    dataset: str,
    family: str = WHOLE,
    *,
    encoder: str | None,
    lm: str | None,
    ours: str | None,
) -> str:
    """A digest of everything besides the seed and the source that a dataset's rows of one ``family``
    (:data:`FAMILIES`; ``*``: all of them) depend on: the budgets it reads (:func:`_needs`, plus the profile's
    plain settings), the auxiliary weight, the dataset's LLM sources, the shipped configs it trains and the
    checkpoints asked for. Rows of earlier calls are kept beside this call's only under the same digest, so a
    new budget for one model leaves the other models' rows standing."""
    need = _needs(family)
    budget = spec["profiles"][profile]
    parts = {
        "budget": {k: v for k, v in budget.items() if k in need or not isinstance(v, dict)},
        "aux_weight": spec["aux_weight"],
        "sources": spec["sources"].get(dataset, {}),
        "configs": {
            m: (REPO / "configs" / "plm" / c).read_text() for m, c in CONFIGS.items() if m in need
        },
        "encoder": encoder,
        "lm": lm if "generative" in need else None,
        "ours": ours,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def merged_rows(
    out: Path, call: Call, rows: list[dict[str, Any]], argv: list[str]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """This call's ``rows`` after the rows of ``out/plm_contexts.json`` that it does not make again, and each
    dataset's source: the command and machine that made its rows (``earlier``: the calls whose rows stay beside).

    Kept: every row of another dataset; within this call's datasets, the rows outside its cells (other seeds,
    models, sources, the KGE rows without ``--kge``) made under the same settings digest as this call's for
    their family (:func:`settings_digest`; a changed config or budget drops them, with a warning). This call's
    rows get their family's digest (``settings``); an earlier row without one is judged by its dataset's
    digest of every setting, and gets its family's digest when kept."""
    prev = earlier_results(out / "plm_contexts.json", "dataset", [], ["rows"])
    made = {(r["dataset"], r["model"], r["source"], r["seed"]) for r in rows}
    for r in rows:
        r["settings"] = call.settings[r["dataset"]][_family(r["model"])]

    def same(r: dict[str, Any]) -> bool:
        now = call.settings[r["dataset"]]
        if "settings" in r:
            return bool(r["settings"] == now[_family(r["model"])])
        return bool(prev["sources"].get(r["dataset"], {}).get("settings") == now[WHOLE])

    kept, dropped = [], set()
    for r in prev["rows"]:
        if r["dataset"] not in call.datasets:
            kept.append(r)
        elif (r["dataset"], r["model"], r["source"], r["seed"]) in made or call.covers(r):
            continue
        elif same(r):
            # a row of an older file, kept under today's settings, carries today's digest from now on
            kept.append({**r, "settings": call.settings[r["dataset"]][_family(r["model"])]})
        else:
            dropped.add((r["dataset"], _family(r["model"])))
    for ds, family in sorted(dropped):
        log.warning(
            "%s: the earlier %s rows were made under other settings (budget, configs or checkpoints); "
            "they are dropped",
            ds,
            family,
        )
    made_by = {
        "command": shlex.join(["python", "benchmarks/plm_contexts.py", *argv]),
        **machine_info(),
    }
    sources = {k: v for k, v in prev["sources"].items() if k not in call.datasets}
    for ds in call.datasets:
        if not any(r["dataset"] == ds for r in rows):
            if any(r["dataset"] == ds for r in kept):
                sources[ds] = prev["sources"][ds]
            continue
        sources[ds] = {**made_by, "settings": call.settings[ds][WHOLE]}
        if any(r["dataset"] == ds for r in kept):
            old = prev["sources"][ds]
            last = {k: v for k, v in old.items() if k != "earlier"}
            sources[ds]["earlier"] = [*old.get("earlier", []), last]
    return [*kept, *rows], sources


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
