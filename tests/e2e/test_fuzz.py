"""Property-based fuzzing of the whole OpenAPI schema against a live server (bounded).

Every operation gets up to MAX_EXAMPLES generated requests (valid and invalid parameters,
bodies and files); every response must be a non-5xx whose status, content type and body
are documented in the schema.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import run_server

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_no_5xx_and_every_response_matches_the_schema(tiny_encoder: Path, tiny_index: Path, tmp_path: Path) -> None:
    root = tmp_path / "idx"
    shutil.copytree(tiny_index, root)  # the fuzzer adds and deletes images: work on a copy
    with run_server(tiny_encoder, root) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 12
        calls: dict[str, int] = {}
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
            def fuzz(case: Any) -> None:
                calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
                case.call_and_validate(checks=CHECKS)

            fuzz()
        # Every operation was really exercised (not skipped by an unsatisfiable strategy).
        assert set(calls) == {op.label for op in operations}, calls
        assert sum(calls.values()) >= 5 * len(operations), calls
