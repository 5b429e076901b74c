"""The README's "Try it", run as written on a fresh clone, so it cannot drift again.

A `git clone` of this repository (its HEAD: commit first) into a temporary directory,
`make run` there on a free port, exactly as the README starts it, then the section's shell
commands in order, in another process, as a reader pastes them. What the reader fills in
is filled in: the API key `make run` printed for `mck_…`, the test's port for 8000, and the
hash the upload answered for the README's example hash. The sample answer and log lines
the README shows must match what the service really printed.

The clone's `.venv` is made before `make run` as a virtualenv whose site-packages link (a
`.pth` line) to this interpreter's: `make run` still runs scripts/bootstrap.sh, whose
`pip install -e ".[service,dev]"` finds every dependency installed and only installs the
clone itself, into the clone's `.venv` (seconds instead of a minute of downloads). pip
never uninstalls or writes outside the environment it runs in, so the shared venv's
editable install keeps pointing at its own checkout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port
from tests.service_process import stop, wait_until_answering

ROOT = Path(__file__).resolve().parent.parent
KEY_PLACEHOLDER = "mck_…"
README_PORT = "8000"
# Sections whose `python manage.py` is the host project's own, not this checkout's.
HOST_PROJECT_SECTION = "Add to an existing Django project"


@dataclass
class Checkout:
    path: Path
    port: int
    key: str
    log: Path

    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")


def section(readme: str, title: str) -> str:
    start = readme.index(f"\n## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else None]


def blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced blocks opened with ```<language> ("" for a bare fence)."""
    found: list[str] = []
    body: list[str] | None = None
    opened_as = ""
    for line in text.splitlines():
        if body is None and line.startswith("```"):
            body, opened_as = [], line[3:].strip()
        elif body is not None and line.strip() == "```":
            if opened_as == language:
                found.append("\n".join(body) + "\n")
            body = None
        elif body is not None:
            body.append(line)
    return found


def shell_commands(text: str) -> list[str]:
    """The ```sh blocks' commands in order: continuations joined, comment lines dropped."""
    commands = []
    for block in blocks(text, "sh"):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


def clean_env(**extra: str) -> dict[str, str]:
    """A reader's shell: none of the test settings' variables (SECRET_KEY, DATABASE_URL,
    MEDIACACHE_READ_DOTENV=0, ...), no make flags of an outer make."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    return {name: os.environ[name] for name in keep if name in os.environ} | extra


def seed_venv(venv: Path) -> None:
    """The clone's .venv, seeing this interpreter's packages through a .pth line."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "mediacache-test-shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checkout]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    path = tmp_path_factory.mktemp("readme") / "mediacache"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    seed_venv(path / ".venv")
    port = free_port()
    log = path.parent / "make-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["make", "run"],
            cwd=path,
            env=clean_env(PORT=str(port), PYTHONUNBUFFERED="1"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # An install that needs the network: generous.
        wait_until_answering(f"http://127.0.0.1:{port}", process, log, timeout=300)
        printed = re.search(r"Development API key.*\n\s+(mck_\S+)", log.read_text())
        assert printed, log.read_text()
        yield Checkout(path, port, printed.group(1), log)
    finally:
        stop(process)


def run_as_written(checkout: Checkout, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=checkout.path, env=clean_env(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_make_run_said_what_it_was_doing_and_wrote_a_dotenv(checkout):
    log = checkout.server_log()
    for step in ("==> Installing Mediacache", "is ready", "==> Writing .env", "==> Migrating"):
        assert step in log
    dotenv = (checkout.path / ".env").read_text()
    assert f"PORT={checkout.port}\n" in dotenv
    assert f"PUBLIC_BASE_URL={checkout.base()}\n" in dotenv
    assert re.search(r"^SECRET_KEY=\S{40,}$", dotenv, flags=re.M)
    assert "file=@tests/fixtures/voice.ogg" in log  # the banner's upload command


def test_try_it_runs_as_written(checkout):
    try_it = section((checkout.path / "README.md").read_text(), "Try it")
    commands = shell_commands(try_it)
    assert commands[0].split("#")[0].strip() == "make run"  # how the fixture started it
    (sample_text,) = blocks(try_it, "json")
    readme_hash = json.loads(re.sub(r",\s*…\]", "]", sample_text))["media_hash"]

    answer: dict | None = None
    for command in commands[1:]:
        filled = command.replace(KEY_PLACEHOLDER, checkout.key)
        filled = filled.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{checkout.port}")
        if answer is not None:
            filled = filled.replace(readme_hash, answer["media_hash"])
        done = run_as_written(checkout, filled)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        if answer is None:  # the first command after make run is the upload
            assert KEY_PLACEHOLDER in command
            assert "/api/attachments/" in command
            answer = json.loads(done.stdout)
            assert answer["short_url"] == f"{checkout.base()}/media/{answer['media_hash']}"
        expected = re.search(r"#\s*X-Cache: (\w+)", command)
        if expected:
            assert re.search(rf"^x-cache: {expected.group(1)}\r?$", done.stdout, re.M | re.I)
    assert answer is not None
    assert '"POST /api/attachments/ HTTP/1.1" 201' in checkout.server_log()
    assert any(c.startswith("cmp ") for c in commands)  # and it passed, above

    # The sample answer is the real one, but for the hash, the port and the clock.
    filled = sample_text.replace(readme_hash, answer["media_hash"])
    filled = filled.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{checkout.port}")
    sample = json.loads(re.sub(r",\s*…\]", "]", filled))
    assert list(sample) == list(answer)
    for name, shown in sample.items():
        if name in ("created_at", "expires_at"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", answer[name])
        elif name == "waveform" and shown is not None:
            assert answer[name][: len(shown)] == shown
            assert len(answer[name]) == 64
        else:
            assert answer[name] == shown, name

    # The log lines shown are the ones printed, but for the hash and the durations.
    (log_block,) = [b for b in blocks(try_it, "") if "[MEDIA CACHE]" in b]
    for line in log_block.splitlines():
        shown = line[line.index("[MEDIA CACHE]") :].replace(readme_hash, answer["media_hash"])
        pattern = re.escape(shown.split(" duration=")[0]) + r" duration=[\d.]+ms"
        assert re.search(pattern, checkout.server_log()), shown


def test_the_readme_manage_commands_run_with_the_service_settings(checkout):
    readme = (checkout.path / "README.md").read_text()
    elsewhere = readme.replace(section(readme, HOST_PROJECT_SECTION), "")
    assert re.findall(r"(?<![/\w])python manage\.py", elsewhere) == []  # always .venv/bin/
    names = sorted(set(re.findall(r"\.venv/bin/python manage\.py (\w+)", elsewhere)))
    assert "generate_media_hashes" in names
    assert "create_api_key" in names
    for name in names:  # each exists, and the settings load from .env alone
        done = run_as_written(checkout, f".venv/bin/python manage.py {name} --help")
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
    done = run_as_written(checkout, ".venv/bin/python manage.py --help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[mediacache]" in done.stdout
    # The same PUBLIC_BASE_URL as the running server (its port came from PORT=... make run).
    done = run_as_written(
        checkout, ".venv/bin/python manage.py generate_media_hashes --rebuild-urls"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"short URLs: {checkout.base()}/media/<hash>" in done.stdout
