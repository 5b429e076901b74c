"""The bucket lifecycle rule that expires media: build it, compare it, merge it in.

A bucket is often shared (logs, backups, another app's prefix), so we never
overwrite its configuration: read every rule, replace only the one carrying our
ID, and write back only when something changed, so a rerun changes nothing. (What
a new rule expires at once is another matter: ``widens`` says when the objects
already in the bucket must be counted first.) Everything here is pure (boto3-shaped
dicts in, dicts out);
the store adapter (``read_lifecycle``/``write_lifecycle``) talks to the bucket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Rule = dict[str, Any]
Action = Literal["create", "update", "unchanged"]

RULE_ID_PREFIX = "mediacache-expire-"


def rule_id_for(prefix: str) -> str:
    """A stable ID per prefix: ``chat/`` -> ``mediacache-expire-chat``.

    Derived from the prefix, so moving ``KEY_PREFIX`` adds a rule for the new
    prefix instead of replacing the old one, which would leave the objects already
    stored under the old prefix to live forever.
    """
    slug = re.sub(r"[^A-Za-z0-9]+", "-", prefix).strip("-")
    return RULE_ID_PREFIX + (slug or "all")[:200]


def desired_rule(prefix: str, days: int, rule_id: str | None = None) -> Rule:
    """Our rule: expire everything under ``prefix`` ``days`` days after upload."""
    if not prefix:
        raise ValueError("an empty prefix would expire every object in the bucket")
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, got {days}")
    return {
        "ID": rule_id or rule_id_for(prefix),
        "Status": "Enabled",
        "Filter": {"Prefix": prefix},
        "Expiration": {"Days": days},
    }


def canonical(rule: Mapping[str, Any]) -> Rule:
    """The rule as S3 means it, so equivalent spellings compare equal.

    Providers echo rules back in slightly different shapes: the deprecated
    top-level ``Prefix``, an ``And`` holding only a prefix, ``false`` flags or
    empty lists. Without this, every run would see a difference and rewrite.
    """
    data = dict(rule)
    if "Prefix" in data and not data.get("Filter"):
        data["Filter"] = {"Prefix": data.pop("Prefix")}
    filter_ = data.get("Filter")
    if isinstance(filter_, Mapping):
        conjunction = filter_.get("And")
        if isinstance(conjunction, Mapping) and set(conjunction) <= {"Prefix"}:
            data["Filter"] = {"Prefix": conjunction.get("Prefix", "")}
    return _drop_empty_items(data)


def _drop_empty(value: Any) -> Any:
    """Recursively drop None, False, "", {} and [] (they mean "not set" to S3)."""
    if isinstance(value, Mapping):
        return _drop_empty_items(value)
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def _drop_empty_items(mapping: Mapping[str, Any]) -> dict[str, Any]:
    kept = {k: _drop_empty(v) for k, v in mapping.items()}
    return {k: v for k, v in kept.items() if v not in (None, False, "", {}, [])}


def same_rule(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return canonical(a) == canonical(b)


def rule_prefix(rule: Mapping[str, Any]) -> str:
    """The key prefix a rule covers ("" for the whole bucket)."""
    filter_ = canonical(rule).get("Filter", {})
    prefix: str = filter_.get("Prefix") or filter_.get("And", {}).get("Prefix", "")
    return prefix


def find_rule(rules: Sequence[Mapping[str, Any]], rule_id: str) -> Rule | None:
    for rule in rules:
        if rule.get("ID") == rule_id:
            return dict(rule)
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to write: the whole configuration, and whether it differs from the bucket's."""

    rules: list[Rule]
    action: Action
    current: Rule | None  # our rule as the bucket has it now

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


def plan(existing: Sequence[Mapping[str, Any]], desired: Rule) -> Plan:
    """Replace the rule with our ID in place (or append it); keep every other rule as is."""
    current = find_rule(existing, desired["ID"])
    if current is None:
        return Plan([*map(dict, existing), desired], "create", None)
    if same_rule(current, desired):
        return Plan(list(map(dict, existing)), "unchanged", current)
    rules = [desired if rule.get("ID") == desired["ID"] else dict(rule) for rule in existing]
    return Plan(rules, "update", current)


def widens(current: Mapping[str, Any] | None, desired: Rule) -> bool:
    """Whether putting ``desired`` where ``current`` is may expire objects the bucket keeps now.

    A new rule does, and so does one that replaces a disabled rule, a rule narrowed by
    tags or sizes, one over another prefix, or one with more days (or a date). Only then
    must the objects it would expire at once be counted; a longer retention is safe.
    """
    if current is None or current.get("Status") != "Enabled":
        return True
    theirs = canonical(current)
    if set(theirs.get("Filter", {})) - {"Prefix"}:
        return True
    days = theirs.get("Expiration", {}).get("Days")
    if not isinstance(days, int) or set(theirs["Expiration"]) != {"Days"}:
        return True
    ours = rule_prefix(desired)
    return not ours.startswith(rule_prefix(theirs)) or desired["Expiration"]["Days"] < days


def overlapping(rules: Sequence[Mapping[str, Any]], desired: Rule) -> list[Rule]:
    """Other enabled rules that also expire objects under our prefix (or a parent of it).

    They are kept, as every stranger's rule is, but the operator should know that
    objects may go earlier (or later) than the retention setting says.
    """
    ours = rule_prefix(desired)
    found = []
    for rule in rules:
        if rule.get("ID") == desired["ID"] or rule.get("Status") != "Enabled":
            continue
        if "Expiration" not in rule:
            continue
        theirs = rule_prefix(rule)
        if ours.startswith(theirs) or theirs.startswith(ours):
            found.append(dict(rule))
    return found


def to_json(rules: Sequence[Mapping[str, Any]]) -> str:
    """The configuration as ``aws s3api put-bucket-lifecycle-configuration`` takes it."""
    return json.dumps({"Rules": list(rules)}, indent=2, default=str)
