"""Every code block of README.md works as written: the Python blocks run (in a temporary folder, slow tier), every
``kgdistill ...`` command of the bash blocks parses (its verb and options exist, its values convert), the command
synopsis names only options that exist, and the YAML blocks load (a complete config validates)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from kgdistill.cli import cli

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_OPERATORS = {"&&", "||", ";", "|"}


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of ``language`` (``""``: blocks without a language)."""
    return [body for lang, body in _FENCE.findall(README.read_text()) if lang == language]


def kgdistill_commands() -> list[list[str]]:
    """The arguments of every ``kgdistill ...`` command in the bash blocks (after ``&&`` too), comments aside."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            tokens = shlex.split(line, comments=True)
            command: list[str] = []
            for token in [*tokens, "&&"]:
                if token in _OPERATORS:
                    if command[:1] == ["kgdistill"]:
                        out.append(command[1:])
                    command = []
                else:
                    command.append(token)
    return out


def check_parses(args: list[str]) -> None:
    """Parse ``kgdistill ARGS`` as the CLI would, without running it or touching the paths it names.

    The verb must exist, every option must be one of its options, the positional arguments must fit its
    arguments, required ones must be given, and every value but a path must convert to its type.
    """
    name, *rest = args
    cmd = cli.commands.get(name)
    assert cmd is not None, f"README: 'kgdistill {name}' is not a command ({sorted(cli.commands)})"
    ctx = click.Context(cmd, info_name=name)
    try:
        values, extra, _ = cmd.make_parser(ctx).parse_args(list(rest))
    except click.UsageError as e:
        raise AssertionError(f"README: kgdistill {shlex.join(args)}: {e}") from None
    assert not extra, f"README: kgdistill {shlex.join(args)}: unexpected arguments {extra}"
    for param in cmd.params:
        value = values.get(param.name) if param.name else None
        if value is None:
            assert not param.required, f"README: kgdistill {name} misses {param.name}"
        elif not isinstance(param.type, click.Path):
            try:
                param.type_cast_value(ctx, value)
            except click.BadParameter as e:
                raise AssertionError(f"README: kgdistill {shlex.join(args)}: {e}") from None


def test_the_readme_has_commands_of_every_kind() -> None:
    verbs = {args[0] for args in kgdistill_commands()}
    assert {"demo", "predict", "train", "cache", "distill", "encode", "compare"} <= verbs
    assert blocks("python") and blocks("yaml")


@pytest.mark.parametrize("args", kgdistill_commands(), ids=shlex.join)
def test_bash_commands_parse(args: list[str]) -> None:
    check_parses(args)
    for arg in args:  # the configs the commands name ship with the repository
        if arg.startswith("configs/"):
            assert (REPO / arg).is_file(), f"README: kgdistill {shlex.join(args)}: no {arg}"


def test_a_wrong_command_is_caught() -> None:
    """The check itself: a misspelt option, a missing argument, a bad value or an unknown verb fail."""
    for wrong in (
        ["cache", "runs/x", "--out", "f", "--kk", "3"],
        ["predict", "runs/x", "--head", "a"],
        ["cache", "runs/x", "--out", "f", "-k", "many"],
        ["trian", "c.yaml"],
        ["evaluate", "a", "b"],
    ):
        with pytest.raises(AssertionError):
            check_parses(wrong)


def test_the_command_synopsis_names_existing_options() -> None:
    """The ``Command line`` block: every verb exists and every option it shows is one of the verb's."""
    synopsis = next(b for b in blocks("") if b.startswith("kgdistill train"))
    for line in synopsis.splitlines():
        usage = line.split("  #")[0]
        words = usage.split()
        verb, cmd = words[1], cli.commands.get(words[1])
        assert cmd is not None, line
        if isinstance(cmd, click.Group):  # a group's line names one of its commands
            verb, cmd = f"{verb} {words[2]}", cmd.commands.get(words[2])
            assert cmd is not None, line
        known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
        shown = set(re.findall(r"(?<![\w.=-])(--?[a-z][\w-]*)", usage))
        assert shown <= known, f"{line}: {sorted(shown - known)} are not options of {verb}"


def test_yaml_blocks_load_and_a_complete_config_validates() -> None:
    from kgdistill.config import parse_config

    complete = 0
    for block in blocks("yaml"):
        for doc in yaml.safe_load_all(block):
            assert isinstance(doc, dict), block
            if {"data", "model", "stages"} <= set(doc):
                parse_config(doc)
                complete += 1
    assert complete >= 1


def test_python_blocks_compile() -> None:
    for i, block in enumerate(blocks("python")):
        compile(block, f"README.md python block {i}", "exec")


@pytest.mark.slow  # trains a real (one-epoch) run on the bundled YAGO11k
def test_python_blocks_run_as_written(tmp_path: Path) -> None:
    """Each Python block runs in a fresh interpreter in an empty folder holding only the repository's configs
    (the README's examples run from the repository root)."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    env = {k: v for k, v in os.environ.items() if k != "KGDISTILL_DATA"}  # the bundled data only
    for i, block in enumerate(blocks("python")):
        out = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert out.returncode == 0, f"README python block {i} failed:\n{out.stderr[-3000:]}"
    assert list((tmp_path / "runs").glob("*-tntcomplex-yago11k/metrics.json"))
