"""Trainable Hugging Face text encoders from local folders: where they are and what is refused.

A bi-encoder fine-tunes a bidirectional encoder (BERT, MiniLM, MPNet, ...). :func:`load_encoder` reads one from
a local folder, never from the network: its tokenizer, its config and its weights. A folder that does not exist,
is not a Hugging Face model, or holds a causal (left-to-right) language model is one
:class:`~kgdistill.errors.ConfigError` naming the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kgdistill.errors import ConfigError

__all__ = ["LoadedEncoder", "build_encoder_module", "encoder_folder", "load_encoder"]

#: Architecture suffixes of decoder-only (causal) language models: their mean-pooled states are no sentence encoder.
_CAUSAL = ("ForCausalLM", "LMHeadModel")


@dataclass(frozen=True)
class LoadedEncoder:
    """What a bi-encoder is built from: the tokenizer, the config (a plain dict) and the weights.

    Attributes:
        folder: the resolved model folder.
        tokenizer: the folder's tokenizer (a ``PreTrainedTokenizerBase``).
        config: ``PretrainedConfig.to_dict()`` (``model_type`` included).
        state: the encoder's state dict, without any pooler or language-model head.
    """

    folder: Path
    tokenizer: Any
    config: dict[str, Any]
    state: dict[str, torch.Tensor]


def encoder_folder(path: str | None) -> Path:
    """The folder of ``path``, or of the packaged all-MiniLM-L6-v2 when ``None``.

    Raises:
        ConfigError: the folder does not exist or has no ``config.json`` (names the path).
    """
    if path is None:
        from kgdistill.llm.encoders import default_minilm_path

        return default_minilm_path()
    folder = Path(path).expanduser()
    if not folder.is_dir():
        what = "is a file, not a model folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"config key 'model.encoder': '{path}' {what} (a local Hugging Face folder)"
        )
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"config key 'model.encoder': '{path}' is not a Hugging Face model folder (no config.json)"
        )
    return folder.resolve()


def _check_bidirectional(config: Any, folder: Path) -> None:
    arch = [a for a in (getattr(config, "architectures", None) or []) if a.endswith(_CAUSAL)]
    if arch or getattr(config, "is_decoder", False):
        what = arch[0] if arch else f"a '{config.model_type}' decoder"
        raise ConfigError(
            f"config key 'model.encoder': '{folder}' holds a causal language model ({what}), not a text "
            "encoder: give a bidirectional encoder folder (BERT, MiniLM, MPNet, ...)"
        )


def build_encoder_module(config: dict[str, Any]) -> torch.nn.Module:
    """An encoder (``AutoModel``, no pooler) with random weights from a config dict: no file is read."""
    from transformers import AutoConfig, AutoModel

    cfg = dict(config)
    cfg_obj = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    try:
        return AutoModel.from_config(cfg_obj, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler do not take the argument
        return AutoModel.from_config(cfg_obj)


def load_encoder(path: str | None) -> LoadedEncoder:
    """Tokenizer, config and weights of the encoder in ``path`` (default: the packaged all-MiniLM-L6-v2).

    Raises:
        ConfigError: a missing folder, a folder without a model, or a causal language model (names the path).
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = encoder_folder(path)
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"config key 'model.encoder': cannot read the model in '{folder}': {e}"
        ) from None
    _check_bidirectional(config, folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        try:
            model = AutoModel.from_pretrained(
                str(folder), local_files_only=True, add_pooling_layer=False
            )
        except TypeError:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(f"config key 'model.encoder': cannot load '{folder}': {e}") from None
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return LoadedEncoder(folder, tokenizer, model.config.to_dict(), state)
