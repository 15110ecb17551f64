"""Command line: ``kgdistill train | distill | cache | encode | evaluate | predict | compare | datasets | models |
demo`` here, and ``benchmark``, ``contexts``, ``export``, ``llm-serve``, ``serve``, ``tune`` from their modules.

Each verb parses its options and calls one function of :mod:`kgdistill.api`. Input errors print one message
and exit with status 2, without a traceback.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kgdistill.bench_cli import benchmark
from kgdistill.clickutil import data_root_option, friendly
from kgdistill.contexts.cli import contexts
from kgdistill.errors import KGDistillError
from kgdistill.export.cli import export
from kgdistill.llm_cli import llm_serve
from kgdistill.serve.cli import serve
from kgdistill.tune.cli import tune

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _api() -> Any:
    """:mod:`kgdistill.api`, imported when a verb runs (``--help`` answers without loading PyTorch)."""
    from kgdistill import api

    return api


#: a KGDistillError is one line and exit 2; Ctrl-C says how to continue
_friendly = friendly("every finished epoch is saved; continue with --resume RUN_DIR")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings only.")
@click.version_option(package_name="kgdistill")
def cli(verbose: bool, quiet: bool) -> None:
    """Knowledge distillation on knowledge graphs."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


_set = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key, e.g. --set train.lr=3e-4 --set stages.0.epochs=10.",
)
_root = data_root_option


def _print_metrics(metrics: Any, title: str) -> None:
    from kgdistill.report import metrics_table

    click.echo(metrics_table(metrics.sides, title=title))


def _run_options(fn: F) -> F:
    fn = click.option(
        "--resume",
        default=None,
        type=click.Path(file_okay=False),
        help="Continue the run in this folder from its last checkpoint.",
    )(fn)
    fn = click.option(
        "--overwrite", is_flag=True, help="Replace a run already in the --out folder."
    )(fn)
    fn = click.option("--out", default=None, help="Run folder (default: runs/<timestamp>-<name>).")(
        fn
    )
    fn = _root(_set(fn))
    return click.argument("config", required=False, type=click.Path(dir_okay=False))(fn)  # type: ignore[no-any-return]


def _run(
    pipeline: Callable[..., Any],
    config: str | None,
    overrides: tuple[str, ...],
    data_root: str | None,
    out: str | None,
    resume: str | None,
    overwrite: bool,
) -> None:
    if resume:
        result = pipeline(resume=resume)  # the config comes from the checkpoint
    else:
        if config is None:
            raise KGDistillError("give a CONFIG file (or --resume RUN_DIR)")
        extra = [f"data.root={data_root}"] if data_root else []
        cfg, _ = _api().load_config(config, [*overrides, *extra])
        result = pipeline(cfg, out=out, overwrite=overwrite)
    if not _main_rank():
        return
    _print_metrics(result.metrics, f"{result.run_dir} ({result.metrics.protocol['split']})")
    _print_retention(result.run_dir / "metrics.json")


def _main_rank() -> bool:
    """Whether this process prints results: the only one, or rank 0 under torchrun."""
    from kgdistill import dist

    return dist.is_main()


def _print_retention(path: Path) -> None:
    """The student's share of each teacher's MRR and parameters, from ``metrics.json``."""
    retention = json.loads(path.read_text()).get("retention", {}) if path.is_file() else {}
    for name, r in retention.items():
        click.echo(
            f"vs teacher '{name}': {r['mrr_share']:.1%} of its MRR ({r['student_mrr'] * 100:.2f} vs "
            f"{r['teacher_mrr'] * 100:.2f}) with {r['parameter_share']:.1%} of its parameters "
            f"({r['student_parameters']:,} vs {r['teacher_parameters']:,})"
        )


@cli.command()
@_run_options
@_friendly
def train(
    config: str | None,
    overrides: tuple[str, ...],
    data_root: str | None,
    out: str | None,
    overwrite: bool,
    resume: str | None,
) -> None:
    """Train a model (a teacher or a standalone model) from a YAML CONFIG."""
    _run(_api().train, config, overrides, data_root, out, resume, overwrite)


@cli.command()
@_run_options
@_friendly
def distill(
    config: str | None,
    overrides: tuple[str, ...],
    data_root: str | None,
    out: str | None,
    overwrite: bool,
    resume: str | None,
) -> None:
    """Distil a student from the teachers of a YAML CONFIG (stages of weighted loss terms)."""
    _run(_api().distill, config, overrides, data_root, out, resume, overwrite)


@cli.command()
@click.argument("teacher", type=click.Path(exists=True))
@click.option("--out", required=True, help="The cache file to write (.safetensors).")
@click.option(
    "-k",
    "k",
    default=128,
    show_default=True,
    type=click.IntRange(min=1),
    help="Keep the top-k scores per query.",
)
@click.option("--full", is_flag=True, help="Keep full score rows (float16) instead of the top-k.")
@click.option("--split", default="train", show_default=True)
@click.option(
    "--for",
    "student",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A student's run config: cache for its graph (e.g. a target view under a union teacher), "
    "in its ids. Default: the teacher's own graph.",
)
@_root
@_friendly
def cache(
    teacher: str,
    out: str,
    k: int,
    full: bool,
    split: str,
    student: str | None,
    data_root: str | None,
) -> None:
    """Score every training query with a TEACHER run once and write its outputs to a cache file."""
    path = _api().cache(
        teacher, out, k=None if full else k, split=split, data=student, data_root=data_root
    )
    click.echo(f"wrote {path}")


def _mix_sweep(
    run: str, retriever: str, step: float, as_json: bool, common: dict[str, Any]
) -> None:
    """``kgdistill evaluate RUN --rerank R --mix-sweep STEP``: a table of the metrics at each fusion weight
    (``common``: the split, overrides, data root, k and query cap of the evaluation)."""
    from kgdistill.evaluate import best_mix, mix_grid

    sweep = _api().rerank_sweep(run, retriever, mixes=mix_grid(step), **common)
    if not _main_rank():
        return
    best = best_mix({m: x.mrr for m, x in sweep.items()})
    if as_json:
        doc = {"best": best, "metrics": {str(m): x.to_dict() for m, x in sweep.items()}}
        click.echo(json.dumps(doc, indent=2))
        return
    k, split = common["rerank_k"], common["split"]
    click.echo(f"{run} re-ranking the top {k} of {retriever}, {split}: MRR by retriever weight")
    for m, x in sweep.items():
        both = x.sides["both"]
        mark = "  <- best" if m == best else ""
        click.echo(f"  w = {m:.3f}  MRR {100 * both['mrr']:6.2f}  MR {both['mr']:9.2f}{mark}")


@cli.command(name="evaluate")
@click.argument("run", type=click.Path(exists=True))
@click.option("--split", default="test", show_default=True)
@_set
@_root
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--rerank",
    "retriever",
    default=None,
    type=click.Path(exists=True),
    help="A retriever run on the same graph: RUN re-ranks its filtered top-k (--rerank-k).",
)
@click.option("--rerank-k", default=100, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--max-queries",
    default=None,
    type=click.IntRange(min=1),
    help="Only the split's first N facts (a quick look at a slow model).",
)
@click.option(
    "--mix-sweep",
    default=None,
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    help="With --rerank: the metrics at every fusion weight 0, STEP, 2 STEP ... 1 of the retriever's scores "
    "(eval.rerank_mix) from one re-ranker pass, and the best; run it on --split valid to choose the weight.",
)
@click.option(
    "--by-relation",
    is_flag=True,
    help="Also the metrics of each relation and relation category (1-1, 1-N, N-1, N-N).",
)
@_friendly
def evaluate_cmd(
    run: str,
    split: str,
    overrides: tuple[str, ...],
    data_root: str | None,
    as_json: bool,
    retriever: str | None,
    rerank_k: int,
    max_queries: int | None,
    mix_sweep: float | None,
    by_relation: bool,
) -> None:
    """Evaluate a run folder or checkpoint; --set eval.ties=pessimistic changes the protocol, --rerank R
    re-ranks run R's top-k (a cross-encoder or generative model on a real graph), --set eval.rerank_mix=W fuses
    the two models' scores, --mix-sweep STEP shows every weight, --by-relation where the model wins and loses."""
    from kgdistill.compare import filter_label
    from kgdistill.config import apply_overrides

    raw: dict[str, Any] = apply_overrides({}, overrides)
    if set(raw) - {"eval"}:
        raise KGDistillError(
            f"evaluate only takes eval.* overrides, got '{sorted(set(raw) - {'eval'})[0]}'"
        )
    upd = raw.get("eval", {})
    if not isinstance(upd, dict):
        raise KGDistillError("evaluate takes eval.<key>=VALUE overrides, not a whole eval section")
    common = {
        "split": split,
        "overrides": upd,
        "data_root": data_root,
        "rerank_k": rerank_k,
        "max_queries": max_queries,
    }
    if mix_sweep is not None:
        if retriever is None:
            raise KGDistillError(
                "--mix-sweep fuses a re-ranker with its retriever: give --rerank RETRIEVER"
            )
        if by_relation:
            raise KGDistillError("--by-relation breaks one evaluation down: drop --mix-sweep")
        _mix_sweep(run, retriever, mix_sweep, as_json, common)
        return
    metrics = _api().evaluate_run(run, retriever=retriever, by_relation=by_relation, **common)
    if not _main_rank():
        return
    if as_json:
        click.echo(json.dumps(metrics.to_dict(), indent=2))
        return
    p = metrics.protocol
    how = f" re-ranking the top {rerank_k} of {retriever}" if retriever else ""
    _print_metrics(metrics, f"{run}{how}: {p['split']}, {filter_label(p)} filter, {p['ties']} ties")
    if metrics.breakdown is not None:
        from kgdistill.report import breakdown_tables

        click.echo("")
        click.echo(breakdown_tables(metrics.breakdown, title="by relation category and relation"))


@cli.command()
@click.argument("run", type=click.Path(exists=True))
@click.option("--relation", "-r", required=True)
@click.option("--head", default=None, help="Ask (head, relation, ?).")
@click.option("--tail", default=None, help="Ask (?, relation, tail).")
@click.option("--time", "time_", default=None, help="A year, 'since 1990', a date or a time label.")
@click.option("-k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--hide-known", is_flag=True, help="Leave out answers already known in training.")
@_root
@_friendly
def predict(
    run: str,
    relation: str,
    head: str | None,
    tail: str | None,
    time_: str | None,
    k: int,
    hide_known: bool,
    data_root: str | None,
) -> None:
    """Top-k answers of a query, by name (answers known in training are marked with *)."""
    query, answers = _api().predict(
        run,
        relation=relation,
        head=head,
        tail=tail,
        time=time_,
        k=k,
        exclude_known=hide_known,
        data_root=data_root,
    )
    click.echo(f"query {query.describe()}" + (" (known answers hidden)" if hide_known else ""))
    click.echo(f"{'rank':>4}  {'score':>10}  known  answer")
    for a in answers:
        mark = "-" if a.known is None else ("*" if a.known else "")
        click.echo(f"{a.rank:4d}  {a.score:10.4f}  {mark:^5}  {a.entity}")


@cli.command()
@click.argument("data")
@click.option(
    "--encoder",
    "encoder_name",
    default="sentence_transformers",
    show_default=True,
    help="Encoder backend: sentence_transformers (packaged MiniLM), hf (local folder), openai (a server).",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Encoder option, e.g. --option path=/models/e5 or --option base_url=http://127.0.0.1:8000/v1.",
)
@click.option("--entity-file", multiple=True, help="TSV 'key<TAB>text' overriding entity texts.")
@click.option(
    "--relation-file", multiple=True, help="TSV 'key<TAB>text' overriding relation texts."
)
@click.option(
    "--cache", "cache_dir", default=None, help="Cache folder (default: $KGDISTILL_CACHE)."
)
@click.option("--dry-run", is_flag=True, help="Only build the texts and report their sources.")
@_root
@_friendly
def encode(
    data: str,
    encoder_name: str,
    options: tuple[str, ...],
    entity_file: tuple[str, ...],
    relation_file: tuple[str, ...],
    cache_dir: str | None,
    dry_run: bool,
    data_root: str | None,
) -> None:
    """Verbalise DATA's entities, relations and times and encode them into the text cache."""
    from kgdistill.config import apply_overrides

    enc: dict[str, Any] = apply_overrides({"name": encoder_name}, options)
    text = {"entity_files": list(entity_file), "relation_files": list(relation_file)}
    out = _api().encode(
        data, encoder=enc, text=text, cache_dir=cache_dir, data_root=data_root, dry_run=dry_run
    )
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))


@cli.command()
@_root
@_friendly
def datasets(data_root: str | None) -> None:
    """List the registered datasets and where they are found."""
    # the catalog: plain tables, so that listing does not import PyTorch (kgdistill.catalog)
    from kgdistill.catalog import DATASET_INFO, LINKED_INFO
    from kgdistill.catalog import data_root as resolve_root

    root = resolve_root(data_root)
    if root is None:
        click.echo(
            "data root: none (give --data-root or set KGDISTILL_DATA); only bundled data is found"
        )
    else:
        click.echo(f"data root: {root}" + ("" if root.is_dir() else " (not a folder)"))

    def where(folder: str, bundled: bool = False) -> str:
        if root is not None and (root / folder).is_dir():
            return str(root / folder)
        if bundled:
            return "bundled"
        return f"not found (looked for {root / folder})" if root is not None else "not found"

    for name, entry in DATASET_INFO.items():
        place = where(entry.folder, entry.bundled)
        click.echo(f"{name:20s} {entry.kind:9s} {place}\n{'':30s} {entry.description}")
    for name, linked in LINKED_INFO.items():
        place = where(linked.folder)
        click.echo(f"{name:20s} {'linked':9s} {place}\n{'':30s} {linked.description} (data.multi)")


@cli.command()
@_friendly
def models() -> None:
    """List the registered models."""
    from kgdistill.catalog import MODEL_INFO  # plain tables: no PyTorch import

    kinds = {"none": "static", "required": "temporal", "optional": "either"}
    for name, info in MODEL_INFO.items():
        click.echo(f"{name:14s} {kinds[info.time_use]:9s} {info.summary}")


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--json", "as_json", is_flag=True, help="Print the runs as JSON (metrics as fractions)."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also draw test MRR per run and valid MRR over training time into this file (.png, .pdf, .svg).",
)
@_friendly
def compare(runs: tuple[str, ...], as_json: bool, plot: str | None) -> None:
    """One table of several finished RUNS: dataset, model, size, protocol, test metrics, time, retention."""
    from kgdistill.compare import comparison_table, plot_comparison, read_runs  # no PyTorch import

    summaries = read_runs(runs)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        click.echo(comparison_table(summaries), nl=False)
    if plot:
        click.echo(f"wrote {plot_comparison(summaries, plot)}", err=as_json)


@cli.command()
@click.option("--out", default=None, help="Run folder (default: runs/<timestamp>-demo-...).")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@_friendly
def demo(out: str | None, epochs: int) -> None:
    """Train and evaluate a small temporal teacher on the bundled YAGO11k."""
    result = _api().demo(out, epochs=epochs)
    _print_metrics(result.metrics, f"demo: TNTComplEx on YAGO11k, test ({result.run_dir})")
    click.echo(_demo_next(result.run_dir))


def _demo_next(run_dir: Path) -> str:
    """What to try after the demo, with commands that run as printed."""
    run = shlex.quote(str(run_dir))
    return "\n".join(
        [
            "",
            "What next:",
            f"  ask the model:      kgdistill predict {run} --head '<Christopher_Guest>' "
            "--relation isMarriedTo --time 1990",
            f"  its curves:         {run_dir / 'curves.png'}",
            "  distil a student:   kgdistill train configs/teacher/tntcomplex-yago11k.yaml "
            "--out runs/tntcomplex-yago11k && kgdistill distill "
            "configs/distill/kd-ttranse_from_tntcomplex-yago11k.yaml",
            f"  compare runs:       kgdistill compare {run} OTHER_RUN...",
            "  your own data:      kgdistill train CONFIG --set data.name=FOLDER (any folder of triples; "
            "its format is detected; kgdistill datasets lists the known ones)",
        ]
    )


# command groups that live in their own modules (importing them loads only click)
cli.add_command(benchmark)
cli.add_command(contexts)
cli.add_command(export)
cli.add_command(llm_serve)
cli.add_command(serve)
cli.add_command(tune)


def main() -> None:
    """Entry point of the ``kgdistill`` console script (and ``python -m kgdistill``): subnormal floats are flushed
    to zero before any tensor work (:func:`kgdistill.runs.flush_denormals`), except for a listing or ``--help`` /
    ``--version``, which answer without loading PyTorch."""
    args = sys.argv[1:]
    if args and not any(a in ("--help", "-h", "--version") for a in args):
        from kgdistill.runs import flush_denormals

        flush_denormals()
    cli(prog_name="kgdistill")


if __name__ == "__main__":
    main()
