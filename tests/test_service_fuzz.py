"""Property-based fuzz of the running service from its own OpenAPI schema (schemathesis strategies run
by hypothesis), bounded in examples and time: whatever it sends, the answer is never a 5xx and never hangs."""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from serve_harness import add_key, make_root, start_server
from test_service import service_params

EXAMPLES_PER_OPERATION = 60
REQUEST_TIMEOUT_S = 60  # a hang fails the test here


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, tiny_model_dir):
    root = make_root(tmp_path_factory.mktemp("fuzz"), service_params(tiny_model_dir, requests_per_minute=100000,
                                                                      audio_s_per_minute=1.0e7))
    server = start_server(root, [])
    server.key = add_key(root, "fuzz")
    yield server
    server.stop()


def test_no_request_gets_a_server_error(fuzzed):
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    statuses: dict[str, set[int]] = {}
    started = time.monotonic()
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case) -> None:
            tries = [{"Authorization": f"Bearer {fuzzed.key}"}, {}]
            for n, headers in enumerate(tries):
                if n == 0 and isinstance(case.body, dict) and "model" in case.body:
                    case.body["model"] = "tiny-random"  # past the model check, so the fields and the file are judged
                response = case.call(base_url=fuzzed.url, headers=headers, timeout=REQUEST_TIMEOUT_S)
                statuses.setdefault(label, set()).add(response.status_code)
                assert response.status_code < 500, (label, response.status_code, response.text[:500])

        call()
    assert fuzzed.process.poll() is None  # still up
    print(f"{sum(1 for _ in operations)} operations in {time.monotonic() - started:.0f} s:", statuses)
