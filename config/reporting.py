"""Error reports (DEBUG pages, admin e-mails) never show credentials.

Django already hides settings named like API/KEY/PASS/SECRET/TOKEN; URLs with
credentials inside (``redis://:password@host``) have innocent names, so any
value that looks like a URL with a user-info part is masked too.
"""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DSN|CREDENTIAL", flags=re.IGNORECASE
    )

    def cleanse_setting(self, key, value):
        value = super().cleanse_setting(key, value)
        if isinstance(value, str):
            return _URL_CREDENTIALS.sub(rf"\g<scheme>{self.cleansed_substitute}@", value)
        return value
