"""Property-based fuzzing of the whole OpenAPI schema against a live server (bounded)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import run_server

pytestmark = pytest.mark.slow


@pytest.fixture()
def fuzz_target(tiny_encoder: Path, tiny_index: Path, tmp_path: Path) -> Iterator[Any]:
    root = tmp_path / "idx"
    shutil.copytree(tiny_index, root)  # the fuzzer adds and deletes images: work on a copy
    with run_server(tiny_encoder, root) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


schema = schemathesis.pytest.from_fixture("fuzz_target")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_response_matches_the_schema(case: Any) -> None:
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    )
