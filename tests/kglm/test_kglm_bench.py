"""benchmarks/kglm_rounds.py end to end on the FB15k-237 subset with a tiny DistMult and the tiny local encoder, two
seeds: every variant's rounds (round 0's KGE shared), both LM baselines, the tables, the plot, and a second call that
reuses every finished round."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = str(FIXTURES / "fb15k237-mini")


@pytest.mark.slow
def test_the_driver_runs_every_variant_and_tabulates(
    tiny_encoder_folder: Path,
    tiny_rounds_spec: Callable[[Path | None], dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kglm_rounds as kglm

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_rounds_spec(tiny_encoder_folder)))
    monkeypatch.setattr(kglm, "SPEC", spec)
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--datasets", DATA, "--seeds", "0", "--seeds", "1", "--profile", "tiny"]
    args += ["--work", str(work), "--out", str(out), "-q"]
    result = CliRunner().invoke(kglm.main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "kglm_rounds.json").read_text())
    assert (out / "kglm_rounds.md").is_file() and (out / "kglm_rounds.png").stat().st_size > 0
    models = [r["model"] for r in doc["kge"]]
    assert models[0] == "KGE alone (round 0)" and len(models) == 5
    assert all(r["seeds"] == 2 and "±" in r["test mrr"] for r in doc["kge"])
    assert [r["model"] for r in doc["lm"]][:3] == [
        "PLM alone",
        "PLM + FitNet to the KGE (no injection)",
        "PLM + injected KGE (round 0)",
    ]
    assert {(r["variant"], r["round"]) for r in doc["rounds"]} >= {
        ("lm-hard", 0),
        ("lm-hard", 1),
        ("lm-soft", 1),
        ("kge-hard", 1),
        ("both-hard", 1),
    }
    seed = work / "fb15k237-mini" / "seed-0"
    # round 0 is shared: the soft variant's is lm-hard's, the control's KGE run is lm-hard's
    assert json.loads((seed / "lm-soft" / "round-0" / "round.json").read_text()) == json.loads(
        (seed / "lm-hard" / "round-0" / "round.json").read_text()
    )
    control = json.loads((seed / "kge-hard" / "round-0" / "round.json").read_text())
    assert control["lm"] is None and control["added"] == 20
    assert (
        control["kge"]
        == json.loads((seed / "lm-hard" / "round-0" / "round.json").read_text())["kge"]
    )
    # the product-of-experts variant trains its own round-0 language model on the shared KGE
    both = json.loads((seed / "both-hard" / "round-0" / "round.json").read_text())
    assert both["lm"] is not None and both["added"] == 20 and both["kge"] == control["kge"]
    # a second call reuses every finished round and baseline
    stamps = {
        p: p.stat().st_mtime
        for p in work.rglob("*.json")
        if p.name in ("round.json", "lm-plain.json")
    }
    again = CliRunner().invoke(kglm.main, args)
    assert again.exit_code == 0, again.output
    assert stamps == {p: p.stat().st_mtime for p in stamps}
    assert json.loads((out / "kglm_rounds.json").read_text())["kge"] == doc["kge"]
    # the selector benchmark reads round 0 of these runs: LM (with and without "no relation"), KGE, product
    import kglm_verify

    vargs = ["--datasets", DATA, "--seeds", "0", "--profile", "tiny", "--negatives", "0"]
    vargs += ["--negatives", "1", "--tops", "5", "--tops", "20", "--rounds-work", str(work)]
    vargs += ["--work", str(tmp_path / "verify"), "--out", str(out), "-q"]
    result = CliRunner().invoke(kglm_verify.main, vargs)
    assert result.exit_code == 0, result.output
    vdoc = json.loads((out / "kglm_verify.json").read_text())
    assert [r["ranked by"] for r in vdoc["rows"]] == [
        "lm (negatives 0)",
        "kge",
        "both (negatives 0)",
        "lm (negatives 1)",
        "both (negatives 1)",
    ]
    for run in vdoc["runs"]:
        p = run["precision"]
        assert 0 < p["scored"] <= run["candidates"] and 0.0 <= p["base"] <= 1.0
        assert all(0.0 <= p[f"{s}@{k}"] <= 1.0 for s in ("lm", "kge", "both") for k in (5, 20))
    with_none = vdoc["runs"][1]["lm_task"]["task"]
    assert with_none["negatives"] == 1 and vdoc["runs"][0]["lm_task"]["task"]["negatives"] == 0
    # the KGE's ranking is the classifier's business only through which candidates it scores
    assert vdoc["runs"][0]["candidates"] == vdoc["runs"][1]["candidates"]
    cached = sorted((tmp_path / "verify").rglob("scores.json"))
    stamps = {p: p.stat().st_mtime for p in cached}
    assert len(cached) == 2
    again = CliRunner().invoke(kglm_verify.main, vargs)
    assert again.exit_code == 0 and stamps == {p: p.stat().st_mtime for p in cached}
    elsewhere = ["--rounds-work", str(tmp_path / "none"), "--work", str(tmp_path / "v2"), "-q"]
    missing = CliRunner().invoke(kglm_verify.main, [*vargs[:-7], *elsewhere])
    assert missing.exit_code == 2 and "run benchmarks/kglm_rounds.py" in missing.output
