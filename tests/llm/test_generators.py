"""Text generators: the ``hf`` backend on a tiny random Llama (plumbing: batching, padding, context window, stop
strings) and on the real SmolLM2-135M-Instruct (greedy answers); config validation through the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgdistill.errors import ConfigError
from kgdistill.llm import (
    GENERATORS,
    Generation,
    HFGenerator,
    LLMError,
    PromptTooLongError,
    Sampling,
    build_generator,
)
from kgdistill.llm.generators import Generator, as_messages, estimate_tokens

PROMPTS = [
    "What is the capital of France? Answer in one sentence.",
    "Name a river.",
    "Describe the city of Ulm, Germany, in one short sentence please.",
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Hi"}],
]


@pytest.fixture(scope="module")
def tiny(tiny_lm_path: Path) -> HFGenerator:
    return build_generator({"name": "hf", "path": str(tiny_lm_path), "batch_size": 2})


def test_registry_has_both_backends() -> None:
    assert GENERATORS.names() == ["hf", "openai"]


def test_sampling_is_validated() -> None:
    assert Sampling().greedy and Sampling(stop="x").stop == ("x",)
    for bad in ({"max_new_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"nope": 1}):
        with pytest.raises(ValueError):
            Sampling(**bad)


def test_options_are_type_checked_like_the_encoders() -> None:
    with pytest.raises(ConfigError, match=r"'generator\.batch_size'"):
        build_generator({"name": "hf", "batch_size": "many"})
    with pytest.raises(ConfigError, match=r"'generator\.truncation'"):
        build_generator({"name": "hf", "truncation": "middle"})
    with pytest.raises(ConfigError, match=r"'generator\.concurency' .*did you mean 'concurrency'"):
        build_generator(
            {"name": "openai", "base_url": "http://x/v1", "model": "m", "concurency": 2}
        )
    with pytest.raises(ConfigError, match=r"'generator\.model' is missing"):
        build_generator({"name": "openai", "base_url": "http://x/v1"})


def test_missing_local_model_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match=f"config key 'path': '{missing}' does not exist"):
        build_generator({"name": "hf", "path": str(missing)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        build_generator({"name": "hf", "path": str(tmp_path / "empty")})


def test_prompts_are_checked() -> None:
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    assert estimate_tokens("one two three four five six seven eight nine ten") == 13 + 4
    with pytest.raises(LLMError, match="some text"):
        as_messages("  ")
    with pytest.raises(LLMError, match="chat message"):
        as_messages([{"role": "user"}])


def test_batched_equals_one_by_one(tiny: HFGenerator, tiny_lm_path: Path) -> None:
    """Left padding and length sorting do not change greedy texts; results come back in prompt order."""
    assert isinstance(tiny, Generator)
    sampling = Sampling(max_new_tokens=8)
    batched = tiny.generate(PROMPTS, sampling)
    single = [tiny.generate([p], sampling)[0] for p in PROMPTS]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.tokens_in for g in batched] == [tiny.count_tokens(p) for p in PROMPTS]
    for g in batched:
        assert isinstance(g, Generation) and g.tokens_out is not None and 0 < g.tokens_out <= 8
        assert g.finish_reason in ("stop", "length") and g.seconds > 0 and g.truncated == 0
    assert tiny.key == f"hf:{tiny_lm_path.resolve()}"


def test_sampling_with_a_seed_repeats(tiny: HFGenerator) -> None:
    hot = Sampling(max_new_tokens=8, temperature=1.5, seed=3)
    assert [g.text for g in tiny.generate(PROMPTS, hot)] == [
        g.text for g in tiny.generate(PROMPTS, hot)
    ]


def test_prompt_longer_than_the_window_names_the_key(tiny_lm_path: Path) -> None:
    long = "word " * 120  # the tiny model's window is 96 tokens
    strict = HFGenerator(path=str(tiny_lm_path))
    with pytest.raises(PromptTooLongError, match=r"prompt for key 'e42' has \d+ tokens"):
        strict.generate(["short", long], Sampling(max_new_tokens=8), keys=["e1", "e42"])
    cut = HFGenerator(path=str(tiny_lm_path), truncation="left")
    short, trimmed = cut.generate(["short", long], Sampling(max_new_tokens=8))
    assert short.truncated == 0 and trimmed.truncated > 0
    assert trimmed.tokens_in == 96 - 8


@pytest.mark.slow  # real SmolLM2 generation, several seconds; the llm-serve test covers it in the fast tier
def test_stop_strings_end_the_text(smollm2: HFGenerator) -> None:
    prompt = "Count from 1 to 10, separated by commas."
    free = smollm2.generate([prompt], Sampling(max_new_tokens=24))[0].text
    assert "4" in free
    stopped = smollm2.generate([prompt], Sampling(max_new_tokens=24, stop=["4"]))[0]
    assert stopped.finish_reason == "stop" and "4" not in stopped.text
    assert free.startswith(stopped.text)


@pytest.mark.slow  # real SmolLM2 generation, several seconds; the llm-serve test covers it in the fast tier
def test_smollm2_answers_and_is_deterministic(smollm2: HFGenerator) -> None:
    prompts = ["What is the capital of France?", "Who wrote Hamlet?"]
    sampling = Sampling(max_new_tokens=16)
    first = smollm2.generate(prompts, sampling)
    assert "Paris" in first[0].text and "Shakespeare" in first[1].text
    assert [g.text for g in smollm2.generate(prompts[::-1], sampling)] == [
        g.text for g in first[::-1]
    ]
    assert smollm2.key == "hf:SmolLM2-135M-Instruct.Q4_1"
    assert first[0].finish_reason == "stop" and first[0].tokens_out < 16
