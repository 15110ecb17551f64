"""``kgdistill llm-serve``: an OpenAI-compatible server over a local generator and encoder (see
:mod:`kgdistill.llm.serve`). Importing this module loads only click; the models load when the command runs."""

from __future__ import annotations

import logging
from typing import Any

import click

from kgdistill.clickutil import friendly

__all__ = ["llm_serve"]

log = logging.getLogger(__name__)


def _spec(name: str, options: tuple[str, ...], device: str | None) -> dict[str, Any] | None:
    """``{"name": name, **options}`` (``none``: no model); ``device`` applies to the local backends."""
    if name.strip().lower() == "none":
        return None
    from kgdistill.config import apply_overrides

    spec: dict[str, Any] = apply_overrides({"name": name}, options)
    if device is not None and name != "openai" and "device" not in spec:
        spec["device"] = device
    return spec


@click.command(name="llm-serve")
@click.option(
    "--generator",
    "generator_name",
    default="hf",
    show_default=True,
    help="Chat backend of kgdistill.llm.GENERATORS (hf: a local causal LM, default the packaged SmolLM2); "
    "'none' for embeddings only.",
)
@click.option(
    "--generator-option",
    multiple=True,
    metavar="KEY=VALUE",
    help="Generator option, e.g. --generator-option path=/models/qwen --generator-option batch_size=16.",
)
@click.option(
    "--encoder",
    "encoder_name",
    default="sentence_transformers",
    show_default=True,
    help="Embedding backend of kgdistill.llm.ENCODERS (default: the packaged all-MiniLM-L6-v2); 'none' for "
    "chat only.",
)
@click.option("--encoder-option", multiple=True, metavar="KEY=VALUE", help="Encoder option.")
@click.option(
    "--device", default=None, help="cpu, cuda, ... for both models (default: CUDA if any)."
)
@click.option(
    "--model-name", default=None, help="Name of the chat model for clients (default: its folder)."
)
@click.option(
    "--embedding-model-name", default=None, help="Name of the embedding model for clients."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--max-wait",
    default=0.01,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for concurrent chat requests to batch together.",
)
@friendly("server stopped")
def llm_serve(
    generator_name: str,
    generator_option: tuple[str, ...],
    encoder_name: str,
    encoder_option: tuple[str, ...],
    device: str | None,
    model_name: str | None,
    embedding_model_name: str | None,
    host: str,
    port: int,
    max_wait: float,
) -> None:
    """Serve /v1/models, /v1/chat/completions and /v1/embeddings (OpenAI-compatible) on HOST:PORT."""
    _serve(
        _spec(generator_name, generator_option, device),
        _spec(encoder_name, encoder_option, device),
        model_name,
        embedding_model_name,
        host,
        port,
        max_wait,
    )


def _serve(
    generator_spec: dict[str, Any] | None,
    encoder_spec: dict[str, Any] | None,
    model_name: str | None,
    embedding_model_name: str | None,
    host: str,
    port: int,
    max_wait: float,
) -> None:
    from kgdistill.errors import ConfigError
    from kgdistill.llm import build_encoder, build_generator
    from kgdistill.llm.serve import create_app, require_serve, served_name

    require_serve()
    if generator_spec is None and encoder_spec is None:
        raise ConfigError("nothing to serve: give a --generator or an --encoder")
    generator = build_generator(generator_spec) if generator_spec else None
    encoder = build_encoder(encoder_spec) if encoder_spec else None
    chat = model_name or (served_name(generator.key, "generator") if generator else "generator")
    embed = embedding_model_name or (served_name(encoder.key, "encoder") if encoder else "encoder")
    app = create_app(generator, encoder, generator_name=chat, encoder_name=embed, max_wait=max_wait)
    import uvicorn

    served = ", ".join(n for n, m in ((chat, generator), (embed, encoder)) if m)
    click.echo(f"serving {served} on http://{host}:{port}/v1", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
