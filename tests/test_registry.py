"""The generic registry (names, errors, kwargs checking) and the contents of the model and loss registries."""

from __future__ import annotations

from typing import Any

import pytest

from kgdistill.errors import ConfigError
from kgdistill.features import TextFeatures
from kgdistill.losses import LOSSES
from kgdistill.models import MODELS, Vocab, build_model, is_temporal
from kgdistill.models.zoo import model_features, time_use
from kgdistill.plm import PLMFeatures
from kgdistill.plm.causal import LMFeatures
from kgdistill.registry import Registry, check_kwargs

#: Every registered model, how it uses time (``none``, ``required``, ``optional``: reads it when the graph has
#: it) and the features it is built from. A model added to the registry needs a row here.
EXPECTED: dict[str, dict[str, Any]] = {
    "transe": {"time": "none"},
    "distmult": {"time": "none"},
    "complex": {"time": "none"},
    "rotate": {"time": "none"},
    "ttranse": {"time": "required"},
    "ta_distmult": {"time": "required"},
    "ta_transe": {"time": "required"},
    "hyte": {"time": "required"},
    "tntcomplex": {"time": "required"},
    "timeplex": {"time": "required"},
    "llm_scorer": {"time": "optional", "features": ("text",)},
    "bi_encoder": {"time": "optional", "features": ("plm",)},
    "cross_encoder": {"time": "optional", "features": ("plm",)},
    "generative": {"time": "optional", "features": ("lm",), "kwargs": {}},
}

VOCAB = Vocab(num_entities=7, num_relations=3, time_labels=("1990", "1991..1995", "unknown"))


def _placeholder(kind: str) -> Any:
    """Stand-in features of ``kind`` for :data:`VOCAB` (a 1-layer 8-d random BERT for ``plm``, Llama for
    ``lm``)."""
    v = VOCAB
    if kind == "lm":
        llama = {"model_type": "llama", "vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1}
        llama |= {"num_attention_heads": 1, "intermediate_size": 8}
        shapes = {"entities": [7, 2], "names": [7, 2], "relations": [6, 2], "times": [3, 2]}
        special = {"prefix": [1], "suffix": [3], "sep": [4], "eos": 2, "pad": 0}
        return LMFeatures.placeholder(
            {
                "config": llama,
                "special": special,
                "max_length": 16,
                "answer_length": 2,
                "shapes": shapes,
            }
        )
    if kind == "plm":
        bert = {"model_type": "bert", "vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1}
        bert |= {"num_attention_heads": 1, "intermediate_size": 8}
        shapes = {"entities": [7, 2], "relations": [6, 2], "times": [3, 2]}
        special = {"cls": 1, "sep": 2, "pad": 0}
        return PLMFeatures.placeholder(
            {"config": bert, "special": special, "max_length": 8, "shapes": shapes}
        )
    return TextFeatures.placeholder(v.num_entities, v.num_relations, v.num_times, 8)


def _widget(*, size: int = 1, colour: str = "red") -> tuple[int, str]:
    return size, colour


def _with_context(*, vocab: Vocab, size: int = 1) -> tuple[Vocab, int]:
    return vocab, size


@pytest.fixture
def reg() -> Registry:
    r: Registry = Registry("widget")
    r.register("Blue_Widget")(_widget)
    r.register("red-widget")(_with_context)
    return r


# -- the generic registry ----------------------------------------------------------------------------------------


def test_register_returns_the_object_and_get_finds_it(reg: Registry) -> None:
    def f() -> None: ...

    assert reg.register("green")(f) is f
    assert reg.get("green") is f
    assert "green" in reg
    assert reg.names() == ["blue_widget", "green", "red_widget"]
    assert list(reg) == reg.names()
    assert [n for n, _ in reg.items()] == reg.names()


def test_duplicate_registration_raises(reg: Registry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        reg.register("Blue_Widget")(_widget)
    # the same name spelled differently is still the same name
    with pytest.raises(ValueError, match="already registered"):
        reg.register("BLUE-WIDGET")(lambda: None)
    assert reg.get("blue_widget") is _widget


@pytest.mark.parametrize(
    "spelling", ["blue_widget", "Blue-Widget", "BLUE_WIDGET", "  blue-widget "]
)
def test_names_match_case_and_dash_underscore_insensitively(reg: Registry, spelling: str) -> None:
    assert reg.get(spelling) is _widget
    assert spelling in reg


def test_contains_rejects_non_strings_and_unknown_names(reg: Registry) -> None:
    assert 3 not in reg
    assert None not in reg
    assert "blue widget" not in reg
    assert "nope" not in reg


def test_unknown_name_lists_known_names_and_suggests_a_close_one(reg: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        reg.get("blue_widgte")
    msg = str(info.value)
    assert "unknown widget 'blue_widgte'" in msg
    assert "Did you mean 'blue_widget'?" in msg
    assert "Known: blue_widget, red_widget" in msg


def test_unknown_name_without_close_match_has_no_suggestion(reg: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        reg.get("zzzzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "blue_widget" in str(info.value)


def test_real_registries_suggest_close_names() -> None:
    with pytest.raises(ConfigError, match=r"Did you mean 'distmult'\?"):
        MODELS.get("distmul")
    with pytest.raises(ConfigError, match=r"Did you mean 'supervised_ce'\?"):
        LOSSES.get("supervised-cee")
    assert MODELS.get("TA-DistMult") is MODELS.get("ta_distmult")


def test_build_from_name_and_mapping(reg: Registry) -> None:
    assert reg.build("blue-widget") == (1, "red")
    assert reg.build({"name": "BLUE_WIDGET", "size": 3, "colour": "blue"}) == (3, "blue")
    assert reg.build({"name": "red_widget", "size": 2}, vocab=VOCAB) == (VOCAB, 2)


def test_build_does_not_mutate_the_spec(reg: Registry) -> None:
    spec = {"name": "blue_widget", "size": 3}
    reg.build(spec)
    assert spec == {"name": "blue_widget", "size": 3}


def test_build_rejects_unknown_kwargs_naming_where_and_key(reg: Registry) -> None:
    with pytest.raises(ConfigError) as info:
        reg.build({"name": "blue_widget", "sise": 3}, where="model")
    msg = str(info.value)
    assert "'model.sise'" in msg
    assert "did you mean 'size'?" in msg
    assert "colour, size" in msg  # the known keys
    # without ``where`` the registry's kind is the prefix
    with pytest.raises(ConfigError, match=r"'widget\.weight'"):
        reg.build({"name": "blue_widget", "weight": 3})


def test_build_rejects_context_keys_given_as_config_keys(reg: Registry) -> None:
    with pytest.raises(ConfigError, match=r"'model\.vocab'"):
        reg.build({"name": "red_widget", "vocab": VOCAB}, where="model", vocab=VOCAB)


def test_check_kwargs_accepts_var_keyword_functions() -> None:
    def anything(**kwargs: object) -> None: ...

    check_kwargs(anything, {"whatever": 1}, where="x")
    with pytest.raises(ConfigError, match=r"'x\.whatever'"):
        check_kwargs(_widget, {"size": 1, "whatever": 1}, where="x")


def test_build_model_names_the_model_section() -> None:
    with pytest.raises(ConfigError, match=r"'model\.dimm'.*did you mean 'dim'"):
        build_model({"name": "distmult", "dimm": 8}, VOCAB)
    with pytest.raises(ConfigError, match="unknown model 'distmul'"):
        build_model({"name": "distmul", "dim": 8}, VOCAB)


# -- what is registered ------------------------------------------------------------------------------------------


def test_every_registered_model_has_a_row_and_vice_versa() -> None:
    registered = set(MODELS.names())
    assert registered - set(EXPECTED) == set(), "registered models without a row in EXPECTED"
    assert set(EXPECTED) - registered == set(), (
        "rows in EXPECTED for models that are not registered"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_time_use_and_features(name: str) -> None:
    use = EXPECTED[name]["time"]
    assert time_use(name) == use
    assert is_temporal(name) is (use == "required")
    kinds = EXPECTED[name].get("features", ())
    assert model_features(name) == kinds
    features = {kind: _placeholder(kind) for kind in kinds}
    spec = {"name": name, **EXPECTED[name].get("kwargs", {"dim": 4})}  # generative: no dim
    model = build_model(spec, VOCAB, features)
    assert model.temporal is (use != "none")  # optional: VOCAB has times, so it reads them
    if kinds:
        with pytest.raises(ConfigError, match="features, which were not computed"):
            build_model(spec, VOCAB)


@pytest.mark.parametrize("name", MODELS.names())
def test_model_builders_cite_a_paper(name: str) -> None:
    doc = MODELS.get(name).__doc__ or ""
    assert "Paper:" in doc


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_classes_cite_a_paper(name: str) -> None:
    doc = LOSSES.get(name).__doc__ or ""
    assert "Paper:" in doc
