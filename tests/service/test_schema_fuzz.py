"""Schemathesis (>= 4) fuzzing of the OpenAPI spec against a live uvicorn server with the tiny
bundle: positive and negative cases for every operation, zero 5xx allowed, and every response
must match its documented schema and status codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from svc_helpers import UvicornThread, make_settings

from service.app import create_app


@pytest.fixture(scope="module")
def fuzz_server(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UvicornThread]:
    state = tmp_path_factory.mktemp("fuzz_state")  # catalogue changes are journaled here
    app = create_app(make_settings(artifacts=bundle_dir, warmup=False, state_dir=state))
    with UvicornThread(app) as server:
        yield server


# The spec needs no loaded model, so it is built at import; the calls go to the live server.
# (schemathesis.pytest.from_fixture would be the lazy way, but 4.32 breaks on pytest 9's node ids.)
schema = schemathesis.openapi.from_dict(create_app(make_settings()).openapi())


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, fuzz_server: UvicornThread) -> None:
    response = case.call(base_url=fuzz_server.base_url, timeout=30)
    if response.status_code == 400 and response.text == PARSER_REJECTION:
        return  # bytes no HTTP client may send (an empty Content-Length, a control character in a header)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                             content_type_conformance, response_schema_conformance])


# uvicorn's HTTP parser answers a malformed request itself, in plain text, before the app sees it
PARSER_REJECTION = "Invalid HTTP request received."

