"""Text encoders with an on-disk embedding cache, text generators, and a helper to run a local llama.cpp server.

* :mod:`kgdistill.llm.encoders` - ``ENCODERS`` registry: ``sentence_transformers`` (default: the packaged
  all-MiniLM-L6-v2), ``hf`` (a local Hugging Face folder, mean pooling) and ``openai`` (any OpenAI-compatible
  ``/v1/embeddings`` server). Each gives float32 ``(N, D)`` vectors, L2-normalised by default.
* :mod:`kgdistill.llm.cache` - :func:`encode_cached`: every (encoder key, text) is encoded once, stored in
  atomically written safetensors shards, so interrupted runs resume where they stopped.
* :mod:`kgdistill.llm.generators` - ``GENERATORS`` registry: ``hf`` (a local causal LM, batched; default: the
  packaged SmolLM2-135M-Instruct) and ``openai`` (any OpenAI-compatible ``/v1/chat/completions`` server, many
  requests in flight). Each gives one :class:`Generation` (text, tokens, seconds, finish reason) per prompt.
* :mod:`kgdistill.llm.serve` - :func:`create_app`: an OpenAI-compatible server (FastAPI) over a generator and an
  encoder of these registries (``kgdistill llm-serve``).
* :mod:`kgdistill.llm.server` - :class:`LlamaCppServer`: ``python -m llama_cpp.server`` as a context manager.

Heavy libraries (sentence-transformers, transformers, openai, fastapi, llama.cpp) are imported only when an
encoder, generator or server of that backend is built.
"""

from kgdistill.llm.cache import EmbeddingCache, encode_cached, text_id
from kgdistill.llm.encoders import (
    ENCODERS,
    BaseEncoder,
    Encoder,
    HFEncoder,
    LLMError,
    OpenAIEncoder,
    SentenceTransformerEncoder,
    build_encoder,
    check_texts,
)
from kgdistill.llm.gen_hf import HFGenerator
from kgdistill.llm.gen_openai import OpenAIGenerator
from kgdistill.llm.generators import (
    GENERATORS,
    Generation,
    GenerationError,
    Generator,
    PromptTooLongError,
    Sampling,
    build_generator,
)
from kgdistill.llm.server import LlamaCppServer, free_port, smollm2_gguf

__all__ = [
    "ENCODERS",
    "GENERATORS",
    "BaseEncoder",
    "EmbeddingCache",
    "Encoder",
    "Generation",
    "GenerationError",
    "Generator",
    "HFEncoder",
    "HFGenerator",
    "LLMError",
    "LlamaCppServer",
    "OpenAIEncoder",
    "OpenAIGenerator",
    "PromptTooLongError",
    "Sampling",
    "SentenceTransformerEncoder",
    "build_encoder",
    "build_generator",
    "check_texts",
    "encode_cached",
    "free_port",
    "smollm2_gguf",
    "text_id",
]
