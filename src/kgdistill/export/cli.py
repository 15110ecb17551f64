"""``kgdistill export RUN --format onnx|torchscript|safetensors-embeddings --out PATH``. Importing this module
loads only click; PyTorch and ONNX load when the command runs."""

from __future__ import annotations

from pathlib import Path

import click

from kgdistill.clickutil import data_root_option, friendly

__all__ = ["export"]

_FORMATS = ("onnx", "torchscript", "safetensors-embeddings")  # kgdistill.export.graph.FORMATS


@click.command(name="export")
@click.argument("run", type=click.Path())
@click.option(
    "--format", "format_", required=True, type=click.Choice(_FORMATS), help="What to write."
)
@click.option(
    "--dtype",
    default="fp32",
    show_default=True,
    type=click.Choice(("fp32", "fp16", "int8")),
    help="How the weights are stored (scores are float32).",
)
@click.option(
    "--topk",
    default=None,
    type=click.IntRange(min=1),
    help="Export the top-k graph (values, ids) instead of all scores.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@data_root_option
@click.option(
    "--max-queries",
    default=None,
    type=click.IntRange(min=1),
    help="Compute the test MRR on the first N test facts only (default: all).",
)
@friendly("the output may be incomplete: run the export again")
def export(
    run: str,
    format_: str,
    dtype: str,
    topk: int | None,
    out: str,
    data_root: str | None,
    max_queries: int | None,
) -> None:
    """Export a finished RUN (or a checkpoint file), check it against PyTorch and write a report beside it."""
    from kgdistill.export.run import export_run, report_path

    report = export_run(
        run,
        out,
        format=format_,  # type: ignore[arg-type]
        dtype=dtype,  # type: ignore[arg-type]
        topk=topk,
        data_root=data_root,
        max_queries=max_queries,
    )
    check, test = report["check"], report["test"]
    click.echo(
        f"wrote {out} ({report['format']}, {report['dtype']}, {report['bytes']:,} bytes): max abs diff "
        f"{check['max_abs_diff']:.3g}, top-10 identical {check['top10_identical']:.1%} "
        f"({check['top10_agree_up_to_ties']:.1%} up to ties) on {check['queries']} test queries; test MRR "
        f"{test['exported']['mrr']:.4f} vs PyTorch {test['pytorch']['mrr']:.4f} "
        f"(cost {test['mrr_cost']:+.4f}); report {report_path(Path(out))}"
    )
