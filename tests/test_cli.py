"""The CLI end to end on real data, and every kind of bad input: one message, exit status 2, no traceback."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kgdistill.cli import cli

FIXTURES = Path(__file__).parent / "fixtures"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)
    return result.exit_code, result.output


def _fails_cleanly(args: list[str], message: str) -> str:
    code, out = _invoke(*args)
    assert code == 2, out
    assert "Traceback" not in out
    assert message in out, out
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TA-DistMult trained for 2 epochs on a real YAGO11k subset through ``kgdistill train``."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = tmp / "ta.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"name": str(FIXTURES / "yago11k-mini")},
                "model": {"name": "ta_distmult", "dim": 16},
                "stages": [{"epochs": 2}],
                "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 2000, "progress": False},
            }
        )
    )
    code, out = _invoke("train", str(cfg), "--out", str(tmp / "run"), "--set", "train.eval_every=1")
    assert code == 0, out
    assert "| both " in out
    return tmp / "run"


def test_listing_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _invoke("models")
    assert code == 0 and "tntcomplex" in out and "temporal" in out and "transe" in out
    monkeypatch.delenv(
        "KGDISTILL_DATA", raising=False
    )  # no data root: YAGO11k comes from the package
    code, out = _invoke("datasets")
    assert code == 0 and "yago11k" in out and "bundled" in out


def test_evaluate_and_tie_modes(run_dir: Path) -> None:
    code, out = _invoke("evaluate", str(run_dir), "--json")
    assert code == 0
    import json

    realistic = json.loads(out)
    assert realistic["protocol"]["ties"] == "realistic"
    assert realistic["protocol"]["model"] == "ta_distmult"
    assert realistic["protocol"]["dataset"] == "yago11k-mini"
    assert realistic["protocol"]["num_parameters"] > 0
    code, out = _invoke("evaluate", str(run_dir), "--json", "--set", "eval.ties=pessimistic")
    pessimistic = json.loads(out)
    assert pessimistic["protocol"]["ties"] == "pessimistic"
    assert pessimistic["sides"]["both"]["mrr"] <= realistic["sides"]["both"]["mrr"]
    code, out = _invoke("evaluate", str(run_dir), "--split", "valid")
    assert code == 0 and "valid" in out


def test_evaluate_by_relation(run_dir: Path) -> None:
    code, out = _invoke("evaluate", str(run_dir), "--by-relation")
    assert code == 0, out
    assert "| category " in out and "| relation " in out
    code, out = _invoke("evaluate", str(run_dir), "--by-relation", "--json")
    assert code == 0, out
    doc = json.loads(out)
    cats = doc["breakdown"]["categories"]
    assert set(cats) <= {"1-1", "1-N", "N-1", "N-N"}
    assert sum(c["facts"] for c in cats.values()) == doc["protocol"]["queries"] // 2
    _fails_cleanly(
        ["evaluate", str(run_dir), "--by-relation", "--mix-sweep", "0.5"], "--mix-sweep fuses"
    )
    _fails_cleanly(
        ["evaluate", str(run_dir), "--by-relation", "--rerank", str(run_dir), "--mix-sweep", "0.5"],
        "drop --mix-sweep",
    )


def test_evaluate_with_the_timestamp_filter(run_dir: Path) -> None:
    """``--set eval.time_filter=timestamp``: the tkbc / TeRo filter, named in the JSON and the printed line;
    it removes a subset of the default (interval) filter's answers, so the MRR cannot rise."""
    import json

    code, out = _invoke("evaluate", str(run_dir), "--json")
    assert code == 0, out
    interval = json.loads(out)
    assert interval["protocol"]["filter_mode"] == "interval"
    code, out = _invoke("evaluate", str(run_dir), "--json", "--set", "eval.time_filter=timestamp")
    assert code == 0, out
    timestamp = json.loads(out)
    assert timestamp["protocol"]["filter"] == "time-aware"
    assert timestamp["protocol"]["filter_mode"] == "timestamp"
    assert timestamp["sides"]["both"]["mrr"] <= interval["sides"]["both"]["mrr"]
    code, out = _invoke("evaluate", str(run_dir), "--set", "eval.time_filter=timestamp")
    assert code == 0 and "test, time-aware (timestamp) filter, realistic ties" in out
    out = _fails_cleanly(
        ["evaluate", str(run_dir), "--set", "eval.time_filter=interval"],
        "config key 'eval.time_filter'",
    )
    assert len(out.strip().splitlines()) == 1


def test_predict_by_name(run_dir: Path) -> None:
    code, out = _invoke(
        "predict",
        str(run_dir),
        "--head",
        "<Xavi_Moro>",
        "--relation",
        "wasBornIn",
        "--time",
        "1990",
        "-k",
        "5",
    )
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].startswith("query (<Xavi_Moro>, <wasBornIn>, ?) at ")  # echo with the time bin
    assert lines[1].split() == ["rank", "score", "known", "answer"]
    assert len(lines) == 7 and lines[2].split()[0] == "1"
    code, out = _invoke(
        "predict",
        str(run_dir),
        "--tail",
        "Paris",
        "--relation",
        "<wasBornIn>",
        "--time",
        "since 1990",
        "-k",
        "3",
    )
    assert code == 0, out


def test_predict_bad_input(run_dir: Path) -> None:
    _fails_cleanly(
        [
            "predict",
            str(run_dir),
            "--head",
            "<Xavi_Moro>",
            "--relation",
            "wasBornIn",
            "--time",
            "3000",
        ],
        "outside the years this model saw",
    )
    _fails_cleanly(
        ["predict", str(run_dir), "--head", "<Xavi_Moro>", "--relation", "wasBornIn"],
        "this model is temporal: give a time",
    )
    _fails_cleanly(
        [
            "predict",
            str(run_dir),
            "--head",
            "<Nobody_At_All>",
            "--relation",
            "wasBornIn",
            "--time",
            "1990",
        ],
        "unknown entity '<Nobody_At_All>'",
    )
    _fails_cleanly(
        [
            "predict",
            str(run_dir),
            "--head",
            "<Xavi_Moro>",
            "--relation",
            "wasBornInn",
            "--time",
            "1990",
        ],
        "unknown relation 'wasBornInn'",
    )


def test_bad_config_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name": "distmult"}, "train": {"lrr": 0.1}}))
    _fails_cleanly(
        ["train", str(cfg)], "config key 'train.lrr' does not exist (did you mean 'lr'?)"
    )
    _fails_cleanly(["train", str(cfg), "--set", "train.lrr"], "is not of the form key.path=value")
    _fails_cleanly(["train", str(tmp_path / "missing.yaml")], "config file not found")


def test_corrupt_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    data = (broken / "best.safetensors").read_bytes()
    (broken / "best.safetensors").write_bytes(data[:1000])
    _fails_cleanly(["evaluate", str(broken)], "truncated or corrupt")
    _fails_cleanly(["train", "--resume", str(tmp_path)], "cannot resume")


def _dataset_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "wd"
    shutil.copytree(FIXTURES / "wikidata12k-mini", folder)
    return folder


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda lines: lines.__setitem__(4, lines[4] + "\textra"),
            "train.txt, line 5: expected 5 columns, found 6",
        ),
        (
            lambda lines: lines.__setitem__(2, "0\t1\t99999\t1990-##-##\t####-##-##"),
            "train.txt, line 3: entity id 99999 is outside the vocabulary",
        ),
        (
            lambda lines: lines.__setitem__(6, "0\t1\t2\tabcd-##-##\t####-##-##"),
            "train.txt, line 7: cannot parse year in date 'abcd-##-##'",
        ),
        (lambda lines: lines.clear(), "train.txt: split is empty"),
    ],
    ids=["columns", "unknown-id", "bad-date", "empty-split"],
)
def test_bad_data_file(tmp_path: Path, edit, message: str) -> None:
    folder = _dataset_copy(tmp_path)
    lines = (folder / "train.txt").read_text().splitlines()
    edit(lines)
    (folder / "train.txt").write_text("".join(line + "\n" for line in lines))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump({"data": {"name": str(folder)}, "model": {"name": "ttranse", "dim": 4}})
    )
    _fails_cleanly(["train", str(cfg), "--out", str(tmp_path / "run")], message)
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_missing_dataset(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"data": {"name": "icews14", "root": str(tmp_path)}, "model": {"name": "ttranse"}}
        )
    )
    _fails_cleanly(["train", str(cfg)], "dataset 'icews14' not found")
    (tmp_path / "ICEWS14").mkdir()
    _fails_cleanly(["train", str(cfg)], "missing file 'entity2id.txt'")


@pytest.mark.slow
def test_demo_runs(tmp_path: Path) -> None:
    code, out = _invoke("demo", "--epochs", "1", "--out", str(tmp_path / "demo"))
    assert code == 0, out
    assert (tmp_path / "demo" / "metrics.json").is_file()
    assert "TNTComplEx on YAGO11k" in out
    assert "What next:" in out and f"kgdistill predict {tmp_path / 'demo'}" in out


def test_demo_next_steps_name_real_files_and_verbs() -> None:
    """The commands the demo suggests parse, and the configs they name exist."""
    from kgdistill.cli import _demo_next, cli

    text = _demo_next(Path("runs/demo"))
    repo = Path(__file__).resolve().parents[1]
    configs = [w for w in text.split() if w.startswith("configs/")]
    assert configs and all((repo / c).is_file() for c in configs)
    verbs = set(re.findall(r"kgdistill (\w+)", text))
    assert verbs <= set(cli.commands) and {"predict", "distill", "compare", "train"} <= verbs


def test_encode_dry_run_reports_text_sources(tmp_path: Path) -> None:
    import json

    code, out = _invoke("encode", "yago11k", "--dry-run")
    assert code == 0
    report = json.loads(out[out.index("{") :])
    assert report["texts"]["entities"]["coverage"] == 1.0
    assert report["examples"]["relation"][-1].startswith("inverse of: ")
    assert "encoder" not in report  # nothing encoded
    bad = tmp_path / "texts.tsv"
    bad.write_text("<No_Such_Entity>\tsomething\n")
    code, out = _invoke("encode", "yago11k", "--dry-run", "--entity-file", str(bad))
    assert code == 2 and f"{bad}, line 1" in out and "<No_Such_Entity>" in out
