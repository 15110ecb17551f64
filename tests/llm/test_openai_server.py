"""The ``openai`` encoder: end to end against a real llama.cpp server (SmolLM2-135M GGUF), and against a scripted
stdlib HTTP server for the failures a real server will not produce on demand (500 then 200, malformed JSON, ...).

The llama.cpp tests are opt-in (marker ``llama_cpp``: ``pip install -e ".[llm-server]"``, then
``pytest -m llama_cpp``); selected without ``llama_cpp`` installed they fail, rather than skip (see ``conftest.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kgdistill.llm import (
    EmbeddingCache,
    LlamaCppServer,
    LLMError,
    OpenAIEncoder,
    build_encoder,
    encode_cached,
    free_port,
)

SMOLLM2_DIM = 576  # hidden size of SmolLM2-135M
TEXTS = [f"fact {i}: the river number {i} flows into the sea" for i in range(16)]


def fast(base_url: str, model: str = "fake", **kwargs: object) -> OpenAIEncoder:
    """An encoder with quick retries, for tests."""
    options: dict[str, object] = {"max_retries": 2, "timeout": 10.0}
    options.update(kwargs)
    return OpenAIEncoder(base_url=base_url, model=model, **options)  # type: ignore[arg-type]


# -- real llama.cpp server ----------------------------------------------------------------------------------


@pytest.mark.llama_cpp
def test_llama_embeddings(llama_server: LlamaCppServer) -> None:
    enc = build_encoder(
        {
            "name": "openai",
            "base_url": llama_server.base_url,
            "model": "smollm2",
            "batch_size": 4,
            "concurrency": 2,
        }
    )
    out = enc.encode(TEXTS[:10])
    assert out.shape == (10, SMOLLM2_DIM) and out.dtype == np.float32
    assert enc.dim == SMOLLM2_DIM
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # consistent: the same request gives the same vectors; another batching gives nearly the same ones
    # (llama.cpp's quantised kernels round differently for other batch sizes: |diff| up to ~3e-3)
    np.testing.assert_allclose(enc.encode(TEXTS[:10]), out, atol=1e-5)
    again = enc.encode([TEXTS[7], TEXTS[0]])
    assert (again * out[[7, 0]]).sum(axis=1).min() > 0.999
    assert float(out[0] @ out[1]) < 0.999  # different texts, different vectors
    food, bread, movie = enc.encode(
        ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."]
    )
    assert food @ bread > food @ movie  # mean-pooled SmolLM2: 0.90 vs 0.84
    assert enc.key == f"openai:{llama_server.base_url}#smollm2"


@pytest.mark.llama_cpp
def test_llama_wrong_model_name_is_ignored(llama_server: LlamaCppServer) -> None:
    """llama-cpp-python serves its one model whatever name a request gives (unlike vLLM/OpenAI: 404)."""
    right = fast(llama_server.base_url, "smollm2").encode(TEXTS[:2])
    wrong = fast(llama_server.base_url, "no-such-model").encode(TEXTS[:2])
    np.testing.assert_allclose(wrong, right, atol=1e-5)


@pytest.mark.llama_cpp
def test_llama_wrong_path_is_one_clear_error(llama_server: LlamaCppServer) -> None:
    """A 404 (here: a wrong API root) is not retried and names the URL and the model."""
    base = llama_server.base_url.replace("/v1", "/wrong/v1")
    with pytest.raises(LLMError) as info:
        fast(base, "smollm2", max_retries=5).encode(TEXTS[:2])
    msg = str(info.value)
    assert f"{base}/embeddings" in msg and "'smollm2'" in msg and "HTTP 404" in msg
    assert "after" not in msg  # failed at once, no retries


@pytest.mark.llama_cpp
def test_llama_killed_mid_run_then_resume(
    tmp_path: Path, counting: type, start_llama: Callable[..., LlamaCppServer]
) -> None:
    """Kill the server between batches: retries, one LLMError, finished batches cached; a restarted server
    on the same address gets only the missing texts."""
    server = start_llama()
    try:
        enc = fast(server.base_url, "smollm2", batch_size=4, concurrency=1)

        def kill_before_third(n: int) -> None:
            if n == 3:
                server.kill()

        wrapper = counting(enc, before_call=kill_before_third)
        t0 = time.monotonic()
        with pytest.raises(LLMError, match=r"unreachable after 3 attempt\(s\)") as info:
            encode_cached(wrapper, TEXTS, tmp_path, batch_size=4, progress=False)
        assert time.monotonic() - t0 < 30
        assert server.base_url in str(info.value) and "smollm2" in str(info.value)
        assert len(EmbeddingCache(tmp_path, enc.key)) == 8

        server = start_llama(port=server.port)
        rerun = counting(fast(server.base_url, "smollm2", batch_size=4))
        out = encode_cached(rerun, TEXTS, tmp_path, progress=False)
        assert rerun.texts == TEXTS[8:]
        assert out.shape == (16, SMOLLM2_DIM)
        fresh = rerun.inner.encode(
            TEXTS
        )  # the same batches as the cached ones, on the restarted server
        assert (out.numpy() * fresh).sum(axis=1).min() > 0.999
    finally:
        server.stop()


def test_unreachable_server_is_one_clear_error() -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(LLMError, match=r"unreachable after 3 attempt\(s\)") as info:
        fast(base, "m").encode(["hello"])
    assert f"{base}/embeddings" in str(info.value)
    assert time.monotonic() - t0 < 10


# -- scripted HTTP server -----------------------------------------------------------------------------------


def test_requests_batches_and_order(scripted) -> None:  # type: ignore[no-untyped-def]
    texts = [f"t{i}" for i in range(7)]
    out = fast(scripted.base_url, batch_size=3, concurrency=1, normalize=False).encode(texts)
    assert [r["input"] for r in scripted.requests] == [texts[0:3], texts[3:6], texts[6:]]
    assert all(r["model"] == "fake" and r["encoding_format"] == "float" for r in scripted.requests)
    np.testing.assert_allclose(out, [scripted.vector(t) for t in texts], rtol=1e-6)


def test_concurrency_is_bounded_and_order_kept(scripted) -> None:  # type: ignore[no-untyped-def]
    scripted.default_delay = 1.0  # long enough for three requests to overlap on a loaded machine
    texts = [f"t{i}" for i in range(9)]
    enc = fast(scripted.base_url, batch_size=1, concurrency=3, normalize=False)
    t0 = time.monotonic()
    out = enc.encode(texts)
    assert scripted.max_in_flight == 3
    assert time.monotonic() - t0 < 9 * 1.0  # ran in parallel
    np.testing.assert_allclose(out, [scripted.vector(t) for t in texts], rtol=1e-6)
    assert enc.chunk_size == 3


def test_5xx_and_429_are_retried(scripted) -> None:  # type: ignore[no-untyped-def]
    scripted.push(500, {"error": {"message": "boom"}})
    scripted.push(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"})
    scripted.push(503, b"unavailable")
    out = fast(scripted.base_url, max_retries=3).encode(["a", "b"])
    assert out.shape == (2, 4) and len(scripted.requests) == 4


def test_retries_run_out(scripted) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        scripted.push(502, {"error": {"message": "bad gateway"}})
    with pytest.raises(LLMError, match="HTTP 502: bad gateway after 3 attempts"):
        fast(scripted.base_url).encode(["a"])
    assert len(scripted.requests) == 3


def test_timeout_is_retried(scripted) -> None:  # type: ignore[no-untyped-def]
    scripted.push(200, scripted.body(1), delay=2.0)
    out = fast(scripted.base_url, timeout=0.3).encode(["a"])
    assert out.shape == (1, 4) and len(scripted.requests) == 2


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retried(scripted, status: int) -> None:  # type: ignore[no-untyped-def]
    scripted.push(status, {"error": {"message": "The model `nope` does not exist."}})
    with pytest.raises(LLMError) as info:
        fast(scripted.base_url, "nope", max_retries=5).encode(["a"])
    msg = str(info.value)
    assert f"{scripted.base_url}/embeddings" in msg and "'nope'" in msg
    assert f"HTTP {status}: The model `nope` does not exist." in msg
    assert len(scripted.requests) == 1


def test_api_key_from_env_only_and_never_leaked(  # type: ignore[no-untyped-def]
    scripted, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "sk-test-secret-0123456789"
    monkeypatch.setenv("KGD_TEST_KEY", secret)
    enc = fast(scripted.base_url, api_key_env="KGD_TEST_KEY")
    encode_cached(enc, ["a", "b"], tmp_path, progress=False)
    assert scripted.headers[0]["authorization"] == f"Bearer {secret}"
    scripted.push(401, {"error": {"message": "invalid api key"}})
    with pytest.raises(LLMError) as info:
        enc.encode(["c"])
    msg = str(info.value)
    assert "HTTP 401" in msg and "$KGD_TEST_KEY, which is set" in msg
    for text in (msg, repr(enc), enc.key):
        assert secret not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()

    monkeypatch.delenv("KGD_TEST_KEY")
    fast(scripted.base_url, api_key_env="KGD_TEST_KEY").encode(["d"])
    assert scripted.headers[-1]["authorization"] == "Bearer EMPTY"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{not json", "malformed JSON"),
        (b"<html>502</html>", "malformed JSON"),
        ({"object": "list"}, "without a 'data' list"),
        ("count", "returned 2 vectors for 3 texts"),
        ("sizes", r"vectors of different sizes \[4, 5\]"),
        ("tokens", "not a flat list of numbers.*pooling"),
        ("nan", "vector 1 is not a flat list of numbers"),
        ("indices", r"sent indices \[0, 0, 2\]"),
    ],
)
def test_bad_answers(scripted, body: object, match: str) -> None:  # type: ignore[no-untyped-def]
    if body == "count":
        body = scripted.body(2)
    elif isinstance(body, str):
        good = scripted.body(3)
        items = good["data"]
        if body == "sizes":
            items[1]["embedding"] = [*items[1]["embedding"], 0.5]
        elif body == "tokens":
            items[0]["embedding"] = [[0.1, 0.2], [0.3, 0.4]]
        elif body == "nan":
            items[1]["embedding"] = [1.0, "NaN", 0.0, 0.0]
        elif body == "indices":
            items[1]["index"] = 0
        body = good
    scripted.push(200, body)
    with pytest.raises(LLMError, match=match):
        fast(scripted.base_url).encode(["a", "b", "c"])
    assert len(scripted.requests) == 1  # a bad answer is not retried


def test_size_change_between_answers(scripted) -> None:  # type: ignore[no-untyped-def]
    enc = fast(scripted.base_url)
    enc.encode(["a"])
    scripted.push(200, scripted.body(1, dim=5))
    with pytest.raises(LLMError, match="returned 5-d vectors, expected 4-d"):
        enc.encode(["b"])


def test_failure_inside_a_parallel_run_stops_the_rest(scripted) -> None:  # type: ignore[no-untyped-def]
    scripted.push(400, {"error": {"message": "bad input"}})
    scripted.default_delay = 0.05
    enc = fast(scripted.base_url, batch_size=1, concurrency=2)
    with pytest.raises(LLMError, match="HTTP 400: bad input"):
        enc.encode([f"t{i}" for i in range(20)])
    assert len(scripted.requests) < 20  # queued batches were cancelled
