"""The ``openai`` generator: any OpenAI-compatible ``/v1/chat/completions`` server, many requests in flight.

Works with vLLM, SGLang, Ollama, llama.cpp's server, ``kgdistill llm-serve`` and OpenAI itself. One request per
prompt, ``concurrency`` of them in flight at once (``openai.AsyncOpenAI`` and a semaphore). Transient failures
(connection errors, timeouts, HTTP 408/409/429/5xx) are retried by the ``openai`` client itself, ``max_retries``
times with its exponential backoff and jitter, honouring ``Retry-After``; nothing here re-implements a retry loop.
A request that still fails - unreachable server, an HTTP error, a malformed answer - ends the whole call as one
:class:`~kgdistill.llm.generators.GenerationError` naming the server, the model and the key being generated; the
requests still in flight are cancelled.

The API key is read only from the environment variable ``api_key_env`` (default ``OPENAI_API_KEY``), never from
config, and is never logged or stored; a local server needs none (``"EMPTY"`` is sent).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from kgdistill.llm.encoders import RETRY_STATUS, require
from kgdistill.llm.generators import (
    GENERATORS,
    Generation,
    GenerationError,
    Prompt,
    Sampling,
    check_prompts,
    estimate_tokens,
    name_key,
)

__all__ = ["OpenAIGenerator"]


@GENERATORS.register("openai")
class OpenAIGenerator:
    """Chat completions from an OpenAI-compatible server.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server knows.
        api_key_env: name of the environment variable holding the API key (unset: ``"EMPTY"`` is sent).
        concurrency: requests in flight at once.
        timeout: seconds per request attempt.
        max_retries: retries of a request after a transient failure (the client's ``max_retries``).
        batch_size: prompts per :meth:`generate` call in batch jobs (what one flush of a job holds); ``None`` =
            ``4 * concurrency``.
        max_tokens_field: the request field for ``max_new_tokens`` (``max_completion_tokens`` for OpenAI's
            reasoning models).
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: PositiveInt = 16,
        timeout: PositiveFloat = 120.0,
        max_retries: NonNegativeInt = 5,
        batch_size: PositiveInt | None = None,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
    ) -> None:
        require("openai")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.batch_size = int(batch_size) if batch_size is not None else 4 * self.concurrency
        self.max_tokens_field = max_tokens_field
        self.key = f"openai:{self.base_url}#{model}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def count_tokens(self, prompt: Prompt) -> int:
        """An estimate (``words * 1.3``): the server's tokenizer is not at hand."""
        return estimate_tokens(prompt)

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, *, keys: Sequence[str] | None = None
    ) -> list[Generation]:
        """One :class:`Generation` per prompt, in order; raises :class:`GenerationError`."""
        messages = check_prompts(prompts)
        if not messages:
            return []
        coro = self._all(messages, sampling, keys)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        with ThreadPoolExecutor(max_workers=1) as pool:  # called from inside an event loop
            return pool.submit(asyncio.run, coro).result()

    async def _all(
        self,
        messages: list[list[dict[str, str]]],
        sampling: Sampling,
        keys: Sequence[str] | None,
    ) -> list[Generation]:
        import openai

        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=os.environ.get(self.api_key_env) or "EMPTY",
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        semaphore = asyncio.Semaphore(self.concurrency)
        body = self._body(sampling)
        async with client:
            tasks = [
                asyncio.ensure_future(self._one(client, semaphore, m, body, keys, i))
                for i, m in enumerate(messages)
            ]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    def _body(self, sampling: Sampling) -> dict[str, Any]:
        body: dict[str, Any] = {
            self.max_tokens_field: sampling.max_new_tokens,
            "temperature": sampling.temperature,
        }
        if not sampling.greedy:
            body["top_p"] = sampling.top_p
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        return body

    async def _one(
        self,
        client: Any,
        semaphore: asyncio.Semaphore,
        messages: list[dict[str, str]],
        body: dict[str, Any],
        keys: Sequence[str] | None,
        i: int,
    ) -> Generation:
        import openai

        async with semaphore:
            t0 = time.perf_counter()
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=self.model, messages=messages, **body
                )
            except openai.APIStatusError as e:
                raise GenerationError(self._status_message(e, keys, i)) from e
            except openai.APITimeoutError as e:
                raise GenerationError(
                    f"chat server {self.url} (model '{self.model}') did not answer{name_key(keys, i)} "
                    f"within {self.timeout:g} s, {self.max_retries + 1} attempt(s)"
                ) from e
            except openai.APIConnectionError as e:
                raise GenerationError(
                    f"chat server {self.url} (model '{self.model}') unreachable{name_key(keys, i)} "
                    f"after {self.max_retries + 1} attempt(s): {type(e).__name__}: {e.__cause__ or e}"
                ) from e
            seconds = time.perf_counter() - t0
        return self._parse(raw.content, seconds, keys, i)

    def _status_message(self, e: Any, keys: Sequence[str] | None, i: int) -> str:
        status, body, detail = e.status_code, e.body, e.message
        if isinstance(body, dict):
            err = body.get("error")
            if isinstance(err, dict):
                detail = err.get("message", err)
            elif err is not None:
                detail = err
            elif "message" in body or "detail" in body:
                detail = body.get("message", body.get("detail"))
        msg = (
            f"chat request to {self.url} (model '{self.model}'){name_key(keys, i)} failed: "
            f"HTTP {status}: {detail}"
        )
        if status in (401, 403):
            state = "set" if os.environ.get(self.api_key_env) else "not set"
            msg += f" (the API key is read from ${self.api_key_env}, which is {state})"
        elif status == 404:
            msg += " (check the model name and that base_url ends with the API root, e.g. /v1)"
        if (status in RETRY_STATUS or status >= 500) and self.max_retries:
            msg += f" after {self.max_retries + 1} attempts"
        return msg

    def _parse(
        self, content: bytes, seconds: float, keys: Sequence[str] | None, i: int
    ) -> Generation:
        """The :class:`Generation` of one answer, checked; a bad answer is a :class:`GenerationError`."""
        where = f"chat server {self.url} (model '{self.model}'){name_key(keys, i)}"
        try:
            payload = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            excerpt = content[:200].decode("utf-8", "replace")
            raise GenerationError(f"{where} sent malformed JSON: {excerpt!r}") from None
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise GenerationError(
                f"{where} sent an answer without a 'choices' list: {str(payload)[:200]!r}"
            )
        message = choices[0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise GenerationError(f"{where} sent a choice without a message text: {choices[0]!r}")
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        return Generation(
            text=text.strip(),
            tokens_in=_count(usage.get("prompt_tokens")),
            tokens_out=_count(usage.get("completion_tokens")),
            seconds=seconds,
            finish_reason=str(choices[0].get("finish_reason") or "stop"),
        )

    def __repr__(self) -> str:
        return f"OpenAIGenerator(base_url={self.base_url!r}, model={self.model!r})"


def _count(x: object) -> int | None:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else None
