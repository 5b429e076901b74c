"""``manage.py apply_media_lifecycle``: the bucket rule that expires media after the retention.

Idempotent and polite: reads the bucket's lifecycle configuration, replaces only
our rule (by ID), keeps every other rule, and writes only when something changed.
Careful with what is already there: a new rule, or a shorter retention, expires at
once every object under the prefix older than the retention, so those are counted
first and the rule is written only with ``--yes`` when there are any.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mediacache.core.settings import media_settings
from mediacache.retention import lifecycle
from mediacache.retention.old_objects import OldObjects, older_than
from mediacache.store import LifecycleUnsupported, ObjectStore, StoreUnavailable, store_for


class Command(BaseCommand):
    help = (
        "Put the S3 lifecycle rule that expires objects under MEDIA_KEY_PREFIX after "
        "MEDIA_RETENTION_DAYS days on the bucket of the default storage. Idempotent; "
        "keeps the bucket's other rules. A new rule (or a shorter retention) expires at "
        "once the objects already under the prefix that are older than the retention: "
        "they are counted first, and without --yes the command refuses (exit 1) when "
        "there are any."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--check",
            action="store_true",
            help="Print the bucket's rules, and how many objects applying ours would expire "
            "at once; exit 1 if ours is missing or different. Writes nothing.",
        )
        mode.add_argument(
            "--dry-run",
            action="store_true",
            help="Print the configuration that would be written (and, on stderr, how many "
            "objects it would expire at once); write nothing.",
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Write the rule even though it expires objects already in the bucket at once "
            "(the count is printed first without it).",
        )
        parser.add_argument(
            "--rule-id",
            default=None,
            help="ID of our rule (default: derived from the prefix, e.g. mediacache-expire-chat).",
        )

    def handle(
        self,
        *args: Any,
        check: bool,
        dry_run: bool,
        yes: bool,
        rule_id: str | None,
        **options: Any,
    ) -> None:
        store = store_for(storages["default"])
        bucket = getattr(store, "bucket", "")
        desired = self._desired_rule(store, rule_id)
        rules, config = self._read(store, bucket)
        result = lifecycle.plan(rules, desired)
        self._warn_about_overlaps(rules, desired)
        old = self._old_objects(store, bucket, result, desired)
        if check:
            self._check(bucket, rules, result, desired, old)
        elif dry_run:
            self._dry_run(bucket, result, desired, old)
        else:
            self._apply(store, bucket, result, desired, config, old, yes)

    def _old_objects(
        self, store: ObjectStore, bucket: str, result: lifecycle.Plan, desired: lifecycle.Rule
    ) -> OldObjects | None:
        """What writing the plan would expire at once; None when it expires nothing new
        (unchanged, or only a longer retention), so an up-to-date rule lists nothing."""
        if not (result.changed and lifecycle.widens(result.current, desired)):
            return None
        try:
            return older_than(store, media_settings().KEY_PREFIX, desired["Expiration"]["Days"])
        except StoreUnavailable as exc:
            raise CommandError(
                f"Could not count the objects rule {desired['ID']} would expire at once "
                f"(listing {bucket}: {exc}); nothing written."
            ) from exc

    def _desired_rule(self, store: ObjectStore, rule_id: str | None) -> lifecycle.Rule:
        """Over the key prefix as the bucket sees it: under the storage's ``location``."""
        media = media_settings()
        prefix = store.full_key(media.KEY_PREFIX) if media.KEY_PREFIX else ""
        try:
            return lifecycle.desired_rule(prefix, media.RETENTION_DAYS, rule_id)
        except ValueError as exc:
            raise CommandError(f"Refusing to write the rule: {exc}.") from exc

    def _read(self, store: ObjectStore, bucket: str) -> tuple[list[lifecycle.Rule], dict[str, Any]]:
        try:
            return store.read_lifecycle()
        except LifecycleUnsupported as exc:
            raise CommandError(
                f"The default storage is {exc}: it has no lifecycle rules. With the local "
                "directory store, run `manage.py purge_expired_media` from cron."
            ) from exc
        except StoreUnavailable as exc:
            raise CommandError(f"Could not read the lifecycle rules of {bucket}: {exc}") from exc

    def _warn_about_overlaps(self, rules: list[lifecycle.Rule], desired: lifecycle.Rule) -> None:
        for rule in lifecycle.overlapping(rules, desired):
            self.stderr.write(
                f"Warning: rule {rule.get('ID', '(no ID)')!r} also expires objects under "
                f"{lifecycle.rule_prefix(desired)!r}: {json.dumps(rule, default=str)}"
            )

    def _check(
        self,
        bucket: str,
        rules: list[lifecycle.Rule],
        result: lifecycle.Plan,
        desired: lifecycle.Rule,
        old: OldObjects | None,
    ) -> None:
        self.stdout.write(f"Lifecycle rules of bucket {bucket}:")
        self.stdout.write(lifecycle.to_json(rules) if rules else "(none)")
        if old is not None:
            self.stdout.write(
                f"Applying rule {desired['ID']} would expire at once: {old.describe()}."
            )
        todo = _what_to_run(old)
        if result.action == "create":
            raise CommandError(f"Rule {desired['ID']} is missing on bucket {bucket}; {todo}.")
        if result.action == "update":
            raise CommandError(
                f"Rule {desired['ID']} on bucket {bucket} differs: has "
                f"{json.dumps(result.current, default=str)}, want {json.dumps(desired)}; {todo}."
            )
        self.stdout.write(self.style.SUCCESS(f"OK: rule {desired['ID']} {_describe(desired)}."))

    def _dry_run(
        self,
        bucket: str,
        result: lifecycle.Plan,
        desired: lifecycle.Rule,
        old: OldObjects | None,
    ) -> None:
        """The message goes to stderr, the JSON alone to stdout: redirect it to a file and it
        is what ``aws s3api put-bucket-lifecycle-configuration`` takes."""
        if result.changed:
            verdict = f"would {result.action} rule {desired['ID']} ({_describe(desired)})"
        else:
            verdict = f"rule {desired['ID']} is up to date; nothing would be written"
        if old is not None:
            verdict += f"; it would expire at once: {old.describe()}"
            if old.count:
                verdict += " (applying it needs --yes)"
        self.stderr.write(f"Dry run on bucket {bucket}: {verdict}. The configuration:")
        self.stdout.write(lifecycle.to_json(result.rules))

    def _apply(
        self,
        store: ObjectStore,
        bucket: str,
        result: lifecycle.Plan,
        desired: lifecycle.Rule,
        config: dict[str, Any],
        old: OldObjects | None,
        yes: bool,
    ) -> None:
        if old is not None and old.count and not yes:
            raise CommandError(_refusal(bucket, result, desired, old))
        if not result.changed:
            self.stdout.write(
                f"Rule {desired['ID']} on bucket {bucket}: unchanged ({_describe(desired)}); "
                "nothing written."
            )
            return
        try:
            store.write_lifecycle(result.rules, config)
        except StoreUnavailable as exc:
            raise CommandError(f"Could not write the lifecycle rules of {bucket}: {exc}") from exc
        kept = len(result.rules) - 1
        self.stdout.write(
            self.style.SUCCESS(
                f"Rule {desired['ID']} on bucket {bucket}: {result.action}d "
                f"({_describe(desired)}); {kept} other rule(s) kept."
            )
        )
        if old is not None and old.count:
            self.stdout.write(
                f"As --yes confirmed, {old.describe()}: the bucket expires them at its next "
                "lifecycle run (within a day or two)."
            )
        elif old is not None:
            self.stdout.write(f"Nothing expires at once: {old.describe()}.")


def _describe(rule: lifecycle.Rule) -> str:
    return f"expires {lifecycle.rule_prefix(rule)} after {rule['Expiration']['Days']} days"


def _what_to_run(old: OldObjects | None) -> str:
    if old is not None and old.count:
        return (
            f"`manage.py apply_media_lifecycle --yes` puts it and expires those {old.count:,} "
            "object(s) at once"
        )
    return "run `manage.py apply_media_lifecycle`"


def _refusal(bucket: str, result: lifecycle.Plan, desired: lifecycle.Rule, old: OldObjects) -> str:
    return (
        f"Refusing to {result.action} rule {desired['ID']} on bucket {bucket} "
        f"({_describe(desired)}): {old.describe()}, and the rule would expire them at once "
        "(at the bucket's next lifecycle run). Nothing written. If your rows still "
        'reference them, keep them: point MEDIACACHE["KEY_PREFIX"] at a prefix of its own for '
        "new uploads, so the rule covers only those, or leave the bucket rule off and expire "
        "attachments by their rows with `manage.py purge_expired_media`. If they may go, "
        "run `manage.py apply_media_lifecycle --yes`."
    )
