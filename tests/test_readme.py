"""The README works to the letter: its first commands run from the repository's root as written,
and every other `lrbench` command it shows names a real command and only options it has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def first_look() -> list[str]:
    """The commands of the README's first-look block (after "A first look")."""
    block = README.split("A first look", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def shown_commands() -> list[str]:
    """Every `lrbench ...` the README shows: in backticks, and at the start of a code line."""
    inline = re.findall(r"`(lrbench [^`]+)`", README)
    fenced = re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S)
    indented = re.findall(r"^    (lrbench .*)$", README, flags=re.M)
    code = "\n".join([*fenced, *indented])
    blocks = re.findall(r"^\s*(?:\.venv/bin/)?(lrbench [^#\n]+)", code, flags=re.M)
    return sorted({c.replace("\\|", "|").strip().rstrip("\\").strip() for c in inline + blocks})


def test_the_first_look_is_the_commands_a_newcomer_reads():
    assert [c.split()[1] for c in first_look()] == [
        "schedules",
        "schedule",
        "sweep",
        "status",
        "report",
    ]


@pytest.mark.parametrize("command", first_look())
def test_the_first_look_runs_as_written(command, cli, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LRBENCH_DATA", str(tmp_path / "data"))
    args = shlex.split(command)[1:]
    if args[0] == "report":  # written where the README says, but not into the checkout
        args[args.index("--out") + 1] = str(tmp_path / "report")
    result = cli(*args)
    assert result.code == 0, result.output


def _help(cli, command: str) -> str:
    result = cli(command, "--help")
    assert result.code == 0, f"`lrbench {command}` is no command: {result.output}"
    return result.out


def test_every_command_shown_has_the_options_shown(cli):
    helps: dict[str, str] = {}
    commands = shown_commands()
    assert len(commands) > 30
    for command in commands:
        words = command.split()
        sub = next((w for w in words[1:] if not w.startswith("-")), None)
        if sub is None or sub == "..." or sub.isupper() or sub == "swep":  # a deliberate typo
            continue
        if sub not in helps:
            helps[sub] = " ".join(_help(cli, sub).split())
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", command):
            if option in ("--debug", "--help"):
                continue
            assert option in helps[sub], f"README: `{command}`: {sub} has no {option}"
