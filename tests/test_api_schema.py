"""Schemathesis: the API against its own OpenAPI schema, with a valid key.

Every operation gets generated requests (valid and invalid); none may answer
5xx, and every answer must match the schema's status codes and shapes. Not
checked: that every schema-valid request succeeds — the API refuses more than a
schema can say (an empty file, a number that is not a phone number, an
attachment already sent), always with a documented 4xx.
(Driven by hand rather than through schemathesis's pytest plugin, whose
fixture integration does not support pytest 9 yet.)
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.evolution_double import EvolutionDouble

EXAMPLES_PER_OPERATION = 25


def test_api_conforms_to_its_schema(live, api_key, settings):
    with EvolutionDouble(api_key="k", instance="i") as evolution:
        settings.EVOLUTION = {**settings.EVOLUTION, "API_URL": evolution.url, "API_KEY": "k",
                              "INSTANCE": "i"}  # fmt: skip
        run_schemathesis(live.url, api_key)


def run_schemathesis(base_url: str, api_key: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json")
    auth = {"Authorization": f"Bearer {api_key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])

        check()
