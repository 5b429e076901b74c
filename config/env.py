"""The environment the settings read: real variables first, then `.env` at the repository root.

environs parses the values and reads `.env` (into itself: `os.environ` is left alone, and a
real variable always beats `.env`). On top of it, the service's rules from before environs:
a blank number or flag means "unset" (its default applies, as a `FOO=` line in an env file
means); text is stripped, and blank text stays blank ("" can mean "off"); a bad value stops
start-up with ImproperlyConfigured naming the variable and what it held.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from environs import Env, EnvValidationError

# Set to 0 to ignore `.env` (tests/settings.py does: a developer's `.env` must not reach tests).
READ_DOTENV = "MEDIACACHE_READ_DOTENV"

T = TypeVar("T")


class SettingsEnv(Env):
    """environs' Env with the service's rules for blanks, whitespace and bad values."""

    def read_dotenv(self, path: Path) -> bool:
        """Read `path` if it exists, unless MEDIACACHE_READ_DOTENV is off; True if read."""
        if not self.bool(READ_DOTENV, True):
            return False
        return bool(self.read_env(path, recurse=False))

    def str(self, name: builtins.str, default: builtins.str = "", **kwargs: Any) -> builtins.str:
        value = super().str(name, default, **kwargs)
        return value.strip() if value else ""

    def int(self, name: builtins.str, default: builtins.int, **kwargs: Any) -> builtins.int:
        return self._typed(super().int, name, default, "an integer", **kwargs)

    def float(self, name: builtins.str, default: builtins.float, **kwargs: Any) -> builtins.float:
        return self._typed(super().float, name, default, "a number", **kwargs)

    def bool(self, name: builtins.str, default: builtins.bool, **kwargs: Any) -> builtins.bool:
        return self._typed(super().bool, name, default, "true or false", **kwargs)

    def names(self, name: builtins.str, default: list[builtins.str]) -> list[builtins.str]:
        """A comma-separated list, items stripped, empty items dropped."""
        items = self.list(name, default, subcast=builtins.str.strip)
        return [item for item in items or [] if item]

    def media_settings(
        self,
        settings_class: type[Any],
        *,
        fixed: dict[builtins.str, Any],
        names: dict[builtins.str, builtins.str],
        defaults: dict[builtins.str, Any],
    ) -> dict[builtins.str, Any]:
        """Every field of a settings dataclass (``MediaSettings``) from the environment:
        ``MEDIA_<FIELD>`` unless ``names`` says otherwise, parsed by the field's type,
        defaulting to ``defaults`` or the dataclass's own; ``fixed`` values are not read.
        The engine's defaults are written once, in the dataclass."""
        readers: dict[builtins.str, Callable[..., Any]] = {
            "str": self.str,
            "int": self.int,
            "float": self.float,
            "bool": self.bool,
            "Sequence[str]": lambda name, default: self.names(name, list(default)),
        }
        values = dict(fixed)
        for field in dataclasses.fields(settings_class):
            if field.name in fixed:
                continue
            read = readers.get(builtins.str(field.type))
            if read is None:  # a mapping (FIELDS): Python settings only
                continue
            default = defaults.get(field.name, field.default)
            values[field.name] = read(names.get(field.name, f"MEDIA_{field.name}"), default)
        return values

    def _typed(
        self,
        parse: Callable[..., T | None],
        name: builtins.str,
        default: T,
        what: builtins.str,
        **kwargs: Any,
    ) -> T:
        raw = super().str(name, "")
        if not raw.strip():
            return default
        try:
            value = parse(name, default, **kwargs)
        except EnvValidationError as exc:
            raise ImproperlyConfigured(f"{name} must be {what}, got {raw!r}") from exc
        return default if value is None else value
