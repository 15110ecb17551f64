"""``kgdistill contexts generate | export | import | coverage`` (see :mod:`kgdistill.contexts`).

Importing this module loads only click; the data, models and the rest of the package load when a command runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from kgdistill.clickutil import friendly

__all__ = ["contexts"]

log = logging.getLogger(__name__)

_root = click.option(
    "--data-root", default=None, help="Folder holding the datasets (default: $KGDISTILL_DATA)."
)
_STOPPED = "every finished batch is in the store; run the same command again to continue"


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _validated(cls: Any, values: dict[str, Any], where: str) -> Any:
    """``cls(**values)`` with pydantic's errors as one ConfigError naming the option."""
    from pydantic import ValidationError

    from kgdistill.errors import ConfigError

    try:
        return cls(**values)
    except ValidationError as e:
        msgs = [f"{where} {'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()]
        raise ConfigError("; ".join(msgs)) from None


def _templates(file: str | None, entity: str | None, triple: str | None, system: str | None) -> Any:
    import yaml

    from kgdistill.contexts.prompts import Templates
    from kgdistill.errors import ConfigError

    values: dict[str, Any] = {}
    if file:
        loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping with entity, triple and/or system")
        values.update(loaded)
    given = {"entity": entity, "triple": triple, "system": system}
    values.update({k: v for k, v in given.items() if v is not None})
    return _validated(Templates, values, "template")


@click.group()
def contexts() -> None:
    """LLM-written contexts for the entities and triples of a graph (contextualization distillation)."""


@contexts.command()
@click.argument("data")
@click.option(
    "--path",
    "prompt_path",
    type=click.Choice(["ed", "td", "ed+td"]),
    default="ed+td",
    show_default=True,
    help="ed: one description per entity; td: one per training triple; ed+td: both.",
)
@click.option(
    "--out", "store", default=None, help="The JSONL store (default: contexts-DATA.jsonl)."
)
@click.option(
    "--generator",
    "generator_name",
    default="hf",
    show_default=True,
    help="hf (a local model; default the packaged SmolLM2-135M-Instruct) or openai (a chat server).",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Generator option, e.g. --option base_url=http://127.0.0.1:8000/v1 --option model=qwen.",
)
@click.option("--max-new-tokens", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--stop", multiple=True, help="A string that ends a text (repeatable).")
@click.option(
    "--templates",
    "templates_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="YAML with entity, triple and/or system prompts.",
)
@click.option("--entity-template", default=None, help="Entity prompt with {entity}.")
@click.option(
    "--triple-template", default=None, help="Triple prompt with {head}, {relation}, {tail}."
)
@click.option("--system", default=None, help="A system message before every prompt.")
@click.option(
    "--min-words",
    default=None,
    type=click.IntRange(min=0),
    help="Fewest words of a kept text, both kinds (default: 30 for entities, 80 for triples).",
)
@click.option("--retries", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--retry-rejected", is_flag=True, help="Generate keys recorded as rejected again.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Only the first N keys.")
@click.option(
    "--keys",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Only these keys: one entity label or head<TAB>relation<TAB>tail per line.",
)
@click.option("--dry-run", is_flag=True, help="Print example prompts and the cost estimate only.")
@click.option("--price-in", default=None, type=float, help="Price per 1M prompt tokens (dry run).")
@click.option(
    "--price-out", default=None, type=float, help="Price per 1M generated tokens (dry run)."
)
@_root
@friendly(_STOPPED)
def generate(
    data: str,
    prompt_path: str,
    store: str | None,
    generator_name: str,
    options: tuple[str, ...],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    stop: tuple[str, ...],
    templates_file: str | None,
    entity_template: str | None,
    triple_template: str | None,
    system: str | None,
    min_words: int | None,
    retries: int,
    retry_rejected: bool,
    limit: int | None,
    keys: str | None,
    dry_run: bool,
    price_in: float | None,
    price_out: float | None,
    data_root: str | None,
) -> None:
    """Generate a context for every key of DATA's prompt path into a JSONL store; rerun to resume."""
    from kgdistill.config import apply_overrides
    from kgdistill.contexts.filters import QualityFilter
    from kgdistill.contexts.job import generate_contexts
    from kgdistill.contexts.plan import plan_contexts
    from kgdistill.data import load_kg
    from kgdistill.llm.generators import Sampling, build_generator

    templates = _templates(templates_file, entity_template, triple_template, system)
    sampling = _validated(
        Sampling,
        {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "seed": seed,
            "stop": stop,
        },
        "sampling",
    )
    words = (
        {} if min_words is None else {"min_words_entity": min_words, "min_words_triple": min_words}
    )
    filters = _validated(QualityFilter, words, "filter")
    spec: dict[str, Any] = apply_overrides({"name": generator_name}, options)
    kg = load_kg(data, root=data_root)
    store = store or f"contexts-{Path(data).name}.jsonl"
    common = {"path": prompt_path, "templates": templates, "keys": keys, "limit": limit}
    if dry_run:
        plan = plan_contexts(
            kg, store, spec, sampling=sampling, price_in=price_in, price_out=price_out, **common
        )
        _echo_json(plan)
        return
    generator = build_generator(spec)
    report = generate_contexts(
        kg,
        store,
        generator,
        sampling=sampling,
        filters=filters,
        retries=retries,
        retry_rejected=retry_rejected,
        **common,
    )
    _echo_json(report.to_dict())


@contexts.command(name="export")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="The text file to write."
)
@click.option(
    "--kind", type=click.Choice(["entity", "triple"]), default=None, help="Only one kind."
)
@friendly("nothing written")
def export_cmd(store: str, out: str, kind: str | None) -> None:
    """Write STORE's accepted contexts as key<TAB>text / head<TAB>relation<TAB>tail<TAB>text lines."""
    from kgdistill.contexts.exchange import export_contexts

    counts = export_contexts(store, out, kind=kind)  # type: ignore[arg-type]
    click.echo(f"wrote {counts['entity']} entity and {counts['triple']} triple contexts to {out}")


@contexts.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dataset", "data", required=True, help="The dataset the contexts are about.")
@click.option("--out", "store", required=True, help="The JSONL store (created when missing).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "tsv", "cpkgc", "cpkgc-synonyms"]),
    default="auto",
    show_default=True,
    help='tsv: this project\'s exchange format; cpkgc: mid<TAB>"text"@en; cpkgc-synonyms: '
    "offset<TAB>name<TAB>syn[SEP]...",
)
@click.option("--model", default=None, help="The model that wrote the texts (recorded).")
@click.option("--replace", is_flag=True, help="Replace contexts already in the store.")
@_root
@friendly("nothing imported")
def import_cmd(
    file: str,
    data: str,
    store: str,
    fmt: str,
    model: str | None,
    replace: bool,
    data_root: str | None,
) -> None:
    """Bring the contexts of FILE (ours, or CP-KGC's LLM files) into a store; reports coverage."""
    from dataclasses import asdict

    from kgdistill.contexts.exchange import import_contexts
    from kgdistill.data import load_kg

    kg = load_kg(data, root=data_root)
    report = import_contexts(file, kg, store, fmt=fmt, model=model, replace=replace)  # type: ignore[arg-type]
    _echo_json(asdict(report))


@contexts.command(name="coverage")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--dataset", "data", default=None, help="Default: the dataset named in the store.")
@_root
@friendly("nothing done")
def coverage_cmd(store: str, data: str | None, data_root: str | None) -> None:
    """Entities and triples of the dataset with a context, overall and per split."""
    from kgdistill.contexts.exchange import coverage
    from kgdistill.contexts.store import read_store
    from kgdistill.data import load_kg
    from kgdistill.errors import DataError

    name = data or read_store(store).dataset
    if name is None:
        raise DataError("not a context store", path=store)
    _echo_json(coverage(load_kg(name, root=data_root), store))
