"""``kgdistill tune SPEC --out DIR``: a hyper-parameter search on validation, then the best config on test.
Importing this module loads only click; PyTorch and Optuna load when the command runs."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from kgdistill.clickutil import data_root_option, friendly

__all__ = ["tune"]


@click.command(name="tune")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="The search's folder (default: runs/tune-<spec name>); run the command again to continue.",
)
@click.option(
    "--trials",
    default=None,
    type=click.IntRange(min=1),
    help="Finished trials to reach (default: the spec's trials); a larger number extends a search.",
)
@click.option("--no-final", is_flag=True, help="Search only: no final runs of the best config.")
@click.option(
    "--results",
    default=None,
    type=click.Path(file_okay=False),
    help="Also write the report as RESULTS/tune-<spec name>.{json,md,png} (a results folder).",
)
@data_root_option
@friendly("finished trials are kept and an interrupted one resumes; run the same command again")
def tune(
    spec: str,
    out: str | None,
    trials: int | None,
    no_final: bool,
    results: str | None,
    data_root: str | None,
) -> None:
    """Search the config keys of a SPEC (YAML) on validation MRR with Optuna, each trial a run folder;
    then run the best config once per final seed on the base config's eval split.

    Writes tune.json, tune.md (trials, best values, final runs) and tune.png into the folder."""
    from kgdistill.tune.report import final_summary, write_report
    from kgdistill.tune.search import tune as run_tune

    folder = Path(out) if out else Path("runs") / f"tune-{Path(spec).stem}"
    command = shlex.join(["kgdistill", *sys.argv[1:]])
    doc = run_tune(
        spec, folder, trials=trials, final=not no_final, data_root=data_root, command=command
    )
    if results:
        stem = Path(spec).stem
        write_report(Path(results), doc, stem if stem.startswith("tune") else f"tune-{stem}")
    best = doc["best"]
    click.echo(
        f"best: trial {best['number']}, valid MRR {100 * best['valid_mrr']:.2f} "
        + " ".join(f"{k}={v}" for k, v in best["params"].items())
    )
    if doc["final"]:
        s = final_summary(doc["final"])
        split = doc["final"][0]["split"]
        click.echo(f"{split} over {len(doc['final'])} seeds: MRR {s['mrr']}, H@1 {s['hits@1']}")
    click.echo(f"report: {folder / 'tune.md'}")
    if results:
        click.echo(f"also in {results}")
