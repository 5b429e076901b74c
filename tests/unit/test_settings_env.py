"""Settings from the environment and `.env` (config/env.py, config/settings.py).

A real variable beats `.env`; blanks, whitespace and bad values keep the rules they had
before environs; the test settings never read a developer's `.env`. The settings module
itself is imported in a child process from a copy of config/ beside a `.env` of the test's
own, so nothing here depends on (or touches) a `.env` in the working tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import READ_DOTENV, SettingsEnv

ROOT = Path(__file__).resolve().parents[2]
DOTENV = """\
# written by make run
DEBUG=1
SECRET_KEY=from-dotenv-secret
PUBLIC_BASE_URL=http://127.0.0.1:8102
PORT=8102
MEDIA_L1_BYTES=1234
"""


@pytest.fixture
def dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `.env` file, with the test settings' switch (off) and its variables unset."""
    for name in (READ_DOTENV, "DEBUG", "SECRET_KEY", "PUBLIC_BASE_URL", "MEDIA_L1_BYTES"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / ".env"
    path.write_text(DOTENV)
    return path


def test_dotenv_fills_what_the_environment_does_not_set(dotenv, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://127.0.0.1:9000")
    env = SettingsEnv()
    assert env.read_dotenv(dotenv)
    assert env.bool("DEBUG", False) is True
    assert env.str("SECRET_KEY") == "from-dotenv-secret"
    assert env.int("MEDIA_L1_BYTES", 5) == 1234
    assert env.str("PUBLIC_BASE_URL") == "http://127.0.0.1:9000"  # the real variable wins
    assert "SECRET_KEY" not in os.environ  # .env is read into the Env, not the process


def test_the_switch_turns_dotenv_off(dotenv, monkeypatch):
    monkeypatch.setenv(READ_DOTENV, "0")
    env = SettingsEnv()
    assert not env.read_dotenv(dotenv)
    assert env.str("SECRET_KEY") == ""


def test_a_missing_dotenv_is_no_error(tmp_path, monkeypatch):
    monkeypatch.delenv(READ_DOTENV, raising=False)
    assert not SettingsEnv().read_dotenv(tmp_path / ".env")


def test_blank_numbers_and_flags_take_their_default_blank_text_stays_blank(monkeypatch):
    monkeypatch.setenv("T_NUMBER", " ")
    monkeypatch.setenv("T_FLAG", "")
    monkeypatch.setenv("T_TEXT", "")
    monkeypatch.setenv("T_PADDED", "  http://x.example  ")
    env = SettingsEnv()
    assert env.int("T_NUMBER", 7) == 7
    assert env.float("T_NUMBER", 0.5) == 0.5
    assert env.bool("T_FLAG", True) is True
    assert env.str("T_TEXT", "/healthz") == ""  # "" can mean "off" (MEDIA_HEALTH_PATH)
    assert env.str("T_UNSET_TEXT", "/healthz") == "/healthz"
    assert env.str("T_PADDED") == "http://x.example"


@pytest.mark.parametrize(
    ("method", "raw", "message"),
    [
        ("int", "12k", "T_BAD must be an integer, got '12k'"),
        ("float", "fast", "T_BAD must be a number, got 'fast'"),
        ("bool", "maybe", "T_BAD must be true or false, got 'maybe'"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_held(monkeypatch, method, raw, message):
    monkeypatch.setenv("T_BAD", raw)
    with pytest.raises(ImproperlyConfigured) as caught:
        getattr(SettingsEnv(), method)("T_BAD", 1)
    assert str(caught.value) == message


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("on", True), ("False", False)])
def test_flags(monkeypatch, raw, expected):
    monkeypatch.setenv("T_FLAG", raw)
    assert SettingsEnv().bool("T_FLAG", not expected) is expected


def test_names_are_stripped_and_empty_items_dropped(monkeypatch):
    monkeypatch.setenv("T_HOSTS", " a.example, b.example ,,")
    env = SettingsEnv()
    assert env.names("T_HOSTS", []) == ["a.example", "b.example"]
    assert env.names("T_UNSET_HOSTS", ["localhost"]) == ["localhost"]


# --- the settings modules, imported in a child process -------------------------------

PRINT_SETTINGS = (
    "import json, importlib, sys; s = importlib.import_module(sys.argv[1]); "
    "print(json.dumps({'DEBUG': s.DEBUG, 'SECRET_KEY': s.SECRET_KEY, "
    "'PUBLIC_BASE_URL': s.PUBLIC_BASE_URL, 'L1_BYTES': s.MEDIACACHE['L1_BYTES']}))"
)


def _project_copy(root: Path) -> Path:
    """config/ and tests/settings.py beside a `.env`, as in a checkout after `make run`."""
    shutil.copytree(ROOT / "config", root / "config", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    shutil.copy(ROOT / "tests" / "settings.py", root / "tests" / "settings.py")
    (root / ".env").write_text(DOTENV)
    return root


def _import_settings(root: Path, module: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(root), **extra}
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS, module],
        cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_service_settings_read_the_dotenv_beside_them(tmp_path):
    root = _project_copy(tmp_path)
    done = _import_settings(root, "config.settings")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "DEBUG": True,
        "SECRET_KEY": "from-dotenv-secret",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8102",
        "L1_BYTES": 1234,
    }
    # Another working directory changes nothing: the file is found beside the settings.
    elsewhere = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS, "config.settings"],
        cwd="/", env={"PATH": os.environ["PATH"], "PYTHONPATH": str(root)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert json.loads(elsewhere.stdout)["PUBLIC_BASE_URL"] == "http://127.0.0.1:8102"


def test_without_dotenv_the_service_settings_still_want_a_secret_key(tmp_path):
    root = _project_copy(tmp_path)
    done = _import_settings(root, "config.settings", **{READ_DOTENV: "0"})
    assert done.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in done.stderr


def test_the_test_settings_never_read_a_developers_dotenv(tmp_path):
    root = _project_copy(tmp_path)
    done = _import_settings(root, "tests.settings", **{READ_DOTENV: "1"})
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert values["SECRET_KEY"] == "tests-only-not-secret"
    assert values["DEBUG"] is False
    assert values["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert values["L1_BYTES"] == 64 * 1024 * 1024


def test_every_variable_the_settings_read_is_in_the_readme_configuration_table():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    table = table[: table.index("\n## ", 1)]
    import config.settings

    settings_source = (ROOT / "config" / "settings.py").read_text()
    # Named in the source (some are read only in some configurations, e.g. S3_*), and
    # every name the settings really read here (the engine's MEDIA_<KEY>s are generated).
    names = set(re.findall(r'env\.\w+\(\s*"([A-Z0-9_]+)"', settings_source)) | {READ_DOTENV}
    names |= set(config.settings.env.dump())
    assert len(names) > 70  # both sources still find the settings' reads
    assert "MEDIA_LOCK_WAIT" in names  # a generated one
    assert sorted(name for name in names if f"`{name}`" not in table) == []
