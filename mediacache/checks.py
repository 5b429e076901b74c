"""The engine's system checks (tag ``mediacache``; ``with_media()`` runs them at start-up)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from mediacache.core.settings import media_settings, unknown_keys
from mediacache.edge import config_problems
from mediacache.tiers.topology import RedisTopology, TopologyError


@checks.register("mediacache")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A key of ``MEDIACACHE`` that is no setting is a mistake, never silently ignored."""
    errors: list[checks.CheckMessage] = []
    for key, closest in unknown_keys():
        hint = f"Did you mean {closest!r}?" if closest else "See the README's configuration table."
        errors.append(
            checks.Error(f"MEDIACACHE[{key!r}] is not a setting", hint=hint, id="mediacache.E004")
        )
    if not errors:
        try:
            RedisTopology.from_settings(media_settings())
        except TopologyError as exc:
            errors.append(
                checks.Error(
                    f"Redis settings: {exc}",
                    hint="README, Redis topologies: one of REDIS_URL, REDIS_SENTINELS (with "
                    "REDIS_SENTINEL_MASTER) or REDIS_CLUSTER_NODES.",
                    id="mediacache.E005",
                )
            )
    return errors


@checks.register("mediacache")
def check_edge(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A purge hook that cannot work would leave deleted objects at the edge: say so at
    start-up rather than at the first delete."""
    try:
        problems = config_problems(media_settings())
    except TypeError:  # a bad MEDIACACHE key: check_settings names it
        return []
    return [
        checks.Error(problem, hint="See the README's edge section.", id="mediacache.E006")
        for problem in problems
    ]
