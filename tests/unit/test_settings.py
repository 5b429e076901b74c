"""One settings object: every MEDIACACHE key with its default; an unknown key is an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from django.core import checks

from mediacache.checks import check_settings
from mediacache.core.settings import KNOWN_KEYS, MediaSettings, media_settings, unknown_keys

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_configured_values(settings):
    settings.MEDIACACHE = {"L1_BYTES": 1234, "RETENTION_DAYS": 7}
    media = media_settings()
    assert media.L1_BYTES == 1234
    assert media.retention == timedelta(days=7)
    assert media.CACHE_TTL == 7 * 24 * 3600  # a default
    assert MediaSettings.from_django(L1_BYTES=5).L1_BYTES == 5  # overrides win


def test_a_typo_is_a_system_check_error_naming_the_closest_key(settings):
    settings.MEDIACACHE = {"L1_BYTE": 1, "CACHE_TTL": 60, "zzz": 1}
    assert unknown_keys() == [("L1_BYTE", "L1_BYTES"), ("zzz", None)]
    errors = check_settings()
    assert [e.id for e in errors] == ["mediacache.E004", "mediacache.E004"]
    assert all(e.level == checks.ERROR for e in errors)
    assert "MEDIACACHE['L1_BYTE'] is not a setting" in errors[0].msg
    assert errors[0].hint == "Did you mean 'L1_BYTES'?"
    assert media_settings().CACHE_TTL == 60  # the known keys still apply


def test_the_service_configures_only_known_keys():
    from django.conf import settings

    assert set(settings.MEDIACACHE) <= KNOWN_KEYS
    assert check_settings() == []


def test_the_mediacache_check_tag_runs_it(settings):
    settings.MEDIACACHE = {**settings.MEDIACACHE, "L1_TTLL": 1}
    found = checks.run_checks(tags=["mediacache"])
    assert any(m.id == "mediacache.E004" and "L1_TTL" in (m.hint or "") for m in found)


def test_a_host_project_gets_an_engine_that_takes_nothing_over():
    bare = MediaSettings()
    assert bare.GC_FREEZE is False  # its process, its collector
    assert (bare.HEALTH_PATH, bare.READY_PATH, bare.METRICS_PATH) == ("", "", "")
    assert bare.FAST_PATH is True  # only ever used under its own uvicorn --http protocol


def service_mediacache(**environ: str) -> dict[str, object]:
    """config.settings' MEDIACACHE as a fresh process builds it from ``environ``
    (the test settings turn GC_FREEZE off, so the service's own defaults need one)."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    code = "import json, config.settings as s; print(json.dumps(s.MEDIACACHE, default=str))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**keep, "SECRET_KEY": "unit-tests-only", "MEDIACACHE_READ_DOTENV": "0", **environ},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_the_service_keeps_gc_freeze_and_its_health_and_metrics_paths():
    service = service_mediacache()
    assert service["GC_FREEZE"] is True
    assert service["FAST_PATH"] is True
    paths = (service["HEALTH_PATH"], service["READY_PATH"], service["METRICS_PATH"])
    assert paths == ("/healthz", "/readyz", "/metrics")


def test_the_service_renames_or_turns_off_a_path_from_the_environment():
    service = service_mediacache(
        MEDIA_METRICS_PATH="", MEDIA_HEALTH_PATH="/livez", MEDIA_GC_FREEZE="0", MEDIA_FAST_PATH="0"
    )
    assert (service["METRICS_PATH"], service["HEALTH_PATH"]) == ("", "/livez")
    assert service["GC_FREEZE"] is service["FAST_PATH"] is False
