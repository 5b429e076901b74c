"""``python -m config.deploycheck``: ``manage.py check --deploy --fail-level ERROR`` whose
findings are log lines (logger ``django.checks``), so that with ``LOG_FORMAT=json`` even
the start-up's warnings reach a log pipeline as JSON objects. Exits 1 on an error, as
the command does; a warning (e.g. HSTS without subdomains) is logged and start-up goes on.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger("django.checks")


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core import checks

    findings = [
        message
        for message in checks.run_checks(include_deployment_checks=True)
        if not message.is_silenced()
    ]
    for message in findings:
        # The check framework's levels are logging's numbers (checks.WARNING == 30).
        logger.log(message.level, "%s", message, extra={"check": message.id})
    return 1 if any(message.is_serious(checks.ERROR) for message in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
