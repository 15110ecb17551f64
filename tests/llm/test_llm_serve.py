"""``kgdistill llm-serve``'s app on 127.0.0.1 over the real SmolLM2-135M-Instruct and MiniLM, driven by the project's
own clients (the ``openai`` generator and :class:`OpenAIEncoder`) and the ``openai`` package; and the ``openai``
generator's failures against the scripted stdlib server (5xx then success, timeouts, malformed answers) and an
unreachable port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kgdistill.llm import (
    GenerationError,
    HFGenerator,
    OpenAIEncoder,
    OpenAIGenerator,
    Sampling,
    build_generator,
    free_port,
)
from kgdistill.llm.serve import BackgroundServer, create_app

PROMPTS = [
    "What is the capital of France?",
    "Describe the river Danube in one sentence.",
    "Who wrote Hamlet?",
]
TEXTS = ["Barack Obama was born in Honolulu.", "Honolulu", "was born in"]


@pytest.fixture(scope="module")
def served(smollm2: HFGenerator, st_encoder: Any) -> Iterator[BackgroundServer]:
    app = create_app(smollm2, st_encoder, generator_name="smollm2", encoder_name="minilm")
    with BackgroundServer(app) as server:
        yield server


def client(base_url: str, **kwargs: Any) -> OpenAIGenerator:
    options: dict[str, Any] = {"max_retries": 2, "timeout": 60.0, "concurrency": 4}
    options.update(kwargs)
    return build_generator({"name": "openai", "base_url": base_url, "model": "smollm2", **options})


def _post(url: str, body: object) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# -- the real server --------------------------------------------------------------------------------------------


def test_generation_equals_the_local_model(served: BackgroundServer, smollm2: HFGenerator) -> None:
    sampling = Sampling(max_new_tokens=16)
    remote = client(served.base_url).generate(PROMPTS, sampling, keys=["a", "b", "c"])
    local = smollm2.generate(PROMPTS, sampling)
    assert [g.text for g in remote] == [g.text for g in local]
    assert [(g.tokens_in, g.tokens_out, g.finish_reason) for g in remote] == [
        (g.tokens_in, g.tokens_out, g.finish_reason) for g in local
    ]
    assert "Paris" in remote[0].text


def test_embeddings_equal_the_local_encoder(served: BackgroundServer, st_encoder: Any) -> None:
    remote = OpenAIEncoder(base_url=served.base_url, model="minilm", batch_size=2).encode(TEXTS)
    np.testing.assert_allclose(remote, st_encoder.encode(TEXTS), atol=1e-6)
    import openai  # the client's own default asks for base64 vectors

    answer = openai.OpenAI(base_url=served.base_url, api_key="none").embeddings.create(
        model="minilm", input=TEXTS[0]
    )
    np.testing.assert_allclose(answer.data[0].embedding, remote[0], atol=1e-6)
    assert answer.usage.prompt_tokens > 0


def test_models_and_usage(served: BackgroundServer) -> None:
    with urllib.request.urlopen(f"{served.base_url}/models", timeout=10) as resp:
        ids = [m["id"] for m in json.loads(resp.read())["data"]]
    assert ids == ["smollm2", "minilm"]
    status, body = _post(
        f"{served.base_url}/chat/completions",
        {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
    )
    assert status == 200 and body["object"] == "chat.completion"
    usage = body["usage"]
    assert usage["completion_tokens"] <= 4 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("chat/completions", {"model": "smollm2"}, "messages"),
        ("chat/completions", {"model": "smollm2", "messages": [{"role": "user"}]}, "content"),
        ("chat/completions", {"model": "smollm2", "messages": [], "max_tokens": 2}, "messages"),
        (
            "chat/completions",
            {"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "stream": True},
            "stream",
        ),
        ("embeddings", {"model": "minilm", "input": [""]}, "input"),
        ("embeddings", {"model": "minilm"}, "input"),
    ],
)
def test_malformed_requests_are_4xx_naming_the_field(
    served: BackgroundServer, path: str, body: dict[str, Any], field: str
) -> None:
    status, answer = _post(f"{served.base_url}/{path}", body)
    assert status == 400
    assert field in answer["error"]["message"] or field in str(answer["error"]["param"])


def test_unknown_model_and_too_long_prompt(served: BackgroundServer) -> None:
    status, answer = _post(
        f"{served.base_url}/chat/completions",
        {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]},
    )
    assert status == 404 and "served: smollm2, minilm" in answer["error"]["message"]
    with pytest.raises(GenerationError, match=r"HTTP 400: .*context window") as info:
        client(served.base_url).generate(
            ["ok", "word " * 9000], Sampling(max_new_tokens=4), keys=["e1", "e2"]
        )
    assert "for key 'e2'" in str(info.value) and served.base_url in str(info.value)


@pytest.mark.slow
def test_cli_server_in_a_subprocess(tmp_path: Path, smollm2: HFGenerator) -> None:
    """``kgdistill llm-serve`` as its own process: the same greedy texts as the local model."""
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "kgdistill", "llm-serve", "--port", str(port), "--device", "cpu"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.5)
        sampling = Sampling(max_new_tokens=12)
        gen = build_generator(
            {"name": "openai", "base_url": base, "model": "SmolLM2-135M-Instruct.Q4_1"}
        )
        remote = gen.generate(PROMPTS[:2], sampling)
        assert [g.text for g in remote] == [g.text for g in smollm2.generate(PROMPTS[:2], sampling)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


# -- failures (scripted server, unreachable port) -------------------------------------------------------------


def chat_body(text: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def test_5xx_then_success_is_retried_by_the_client(scripted: Any) -> None:
    scripted.push(500, {"error": {"message": "boom"}})
    scripted.push(503, b"unavailable")
    scripted.push(200, chat_body(" hello "))
    [gen] = client(scripted.base_url, max_retries=3).generate(["hi"], Sampling(max_new_tokens=4))
    assert gen.text == "hello" and (gen.tokens_in, gen.tokens_out) == (5, 2)
    assert len(scripted.requests) == 3
    sent = scripted.requests[0]
    assert sent["model"] == "smollm2" and sent["max_tokens"] == 4 and sent["temperature"] == 0.0


def test_5xx_after_retries_names_server_and_key(scripted: Any) -> None:
    for _ in range(3):
        scripted.push(502, {"error": {"message": "bad gateway"}})
    with pytest.raises(GenerationError) as info:
        client(scripted.base_url).generate(["hi"], Sampling(), keys=["<Barack_Obama>"])
    msg = str(info.value)
    assert f"{scripted.base_url}/chat/completions" in msg and "key '<Barack_Obama>'" in msg
    assert "HTTP 502: bad gateway after 3 attempts" in msg


def test_timeout_is_one_clear_error(scripted: Any) -> None:
    scripted.push(200, chat_body("late"), delay=3.0)
    t0 = time.monotonic()
    with pytest.raises(
        GenerationError, match=r"did not answer for key 'k' within 0.3 s, 1 attempt"
    ):
        client(scripted.base_url, timeout=0.3, max_retries=0).generate(
            ["hi"], Sampling(), keys=["k"]
        )
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>not json", "malformed JSON"),
        ({"object": "list", "data": []}, "without a 'choices' list"),
        (
            {"choices": [{"message": {"role": "assistant", "content": None}}]},
            "without a message text",
        ),
    ],
)
def test_malformed_answers(scripted: Any, body: object, match: str) -> None:
    scripted.push(200, body)
    with pytest.raises(GenerationError, match=match) as info:
        client(scripted.base_url).generate(["hi"], Sampling(), keys=["t1"])
    assert "key 't1'" in str(info.value)


def test_unreachable_port_is_one_clear_error() -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(
        GenerationError, match=r"unreachable for key 'k[01]' after 2 attempt\(s\)"
    ) as info:
        client(base, max_retries=1).generate(["a", "b"], Sampling(), keys=["k0", "k1"])
    assert f"{base}/chat/completions" in str(info.value)


def test_concurrency_is_bounded(scripted: Any) -> None:
    scripted.default_delay = 0.5
    for i in range(6):
        scripted.push(200, chat_body(f"t{i}"), delay=0.5)
    out = client(scripted.base_url, concurrency=3).generate([f"p{i}" for i in range(6)], Sampling())
    assert scripted.max_in_flight == 3
    assert sorted(g.text for g in out) == [f"t{i}" for i in range(6)]


def test_api_key_only_from_the_environment(scripted: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGD_GEN_KEY", "sk-secret-42")
    scripted.push(200, chat_body("ok"))
    gen = client(scripted.base_url, api_key_env="KGD_GEN_KEY")
    gen.generate(["hi"], Sampling())
    assert scripted.headers[0]["authorization"] == "Bearer sk-secret-42"
    assert "sk-secret" not in gen.key and "sk-secret" not in repr(gen)
