"""One settings object: every MEDIACACHE key with its default; an unknown key is an error."""

from __future__ import annotations

from datetime import timedelta

from django.core import checks

from mediacache.checks import check_settings
from mediacache.core.settings import KNOWN_KEYS, MediaSettings, media_settings, unknown_keys


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
