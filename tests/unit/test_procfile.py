"""A deploy's release step must not delete a host's data: it may report, never apply."""

from __future__ import annotations

import shlex
from pathlib import Path

PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def release_commands() -> list[list[str]]:
    (line,) = [ln for ln in PROCFILE.read_text().splitlines() if ln.startswith("release:")]
    words = shlex.split(line.removeprefix("release:"), comments=True)
    commands, current = [], []
    for word in words:
        if word in {"&&", "||", ";", "|"}:
            commands.append(current)
            current = []
        else:
            current.append(word.strip("()"))
    return [c for c in [*commands, current] if c]


def test_release_never_writes_the_lifecycle_rule():
    lifecycle = [c for c in release_commands() if "apply_media_lifecycle" in c]
    for command in lifecycle:
        assert "--yes" not in command
        assert {"--check", "--dry-run"} & set(command), f"release applies the rule: {command}"


def test_release_still_migrates():
    assert ["python", "manage.py", "migrate", "--noinput"] in release_commands()
