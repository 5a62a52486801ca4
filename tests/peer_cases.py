"""Running the peers' test cases (``../shared/reference/peer-cases/``) through this client, for the tests.

The reference data stays outside this repository: ``ANALYTICS_CIO_SHARED`` names the shared directory
(default: ``../shared`` beside the checkout, as in CI). :func:`shared_dir` skips the calling test with a clear
message when it is absent, or fails it when ``ANALYTICS_CIO_REQUIRE_SHARED=1`` (as ``.ci/run`` sets).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analytics_cio import Client
from analytics_cio._import_dispatch import Dispatch, message_for
from analytics_cio.testing._recorded import RecordedRequest
from analytics_cio.testing._server import LocalCustomerIO

from .conftest import API_KEY, SITE_ID, Errors

REPO = Path(__file__).resolve().parent.parent
PEER_FILES = ("segment_actions.json", "rudder.json")


def shared_dir() -> Path:
    """The shared reference directory; skips (or, when it is required, fails) the test where it is absent."""
    path = Path(os.environ.get("ANALYTICS_CIO_SHARED") or REPO.parent / "shared")
    if (path / "reference" / "peer-cases").is_dir() and (path / "spec" / "mapping.md").is_file():
        return path
    reason = (f"the shared reference data is not at {path} (set ANALYTICS_CIO_SHARED to the directory holding "
              "reference/peer-cases/ and spec/mapping.md)")
    if os.environ.get("ANALYTICS_CIO_REQUIRE_SHARED") == "1":
        pytest.fail(reason + "; ANALYTICS_CIO_REQUIRE_SHARED=1 requires it")
    pytest.skip(reason)


def load_cases() -> list[dict[str, Any]]:
    """Every peer case, or [] when the shared directory is absent (the tests then skip, see shared_dir)."""
    path = Path(os.environ.get("ANALYTICS_CIO_SHARED") or REPO.parent / "shared") / "reference" / "peer-cases"
    cases: list[dict[str, Any]] = []
    for name in PEER_FILES:
        if (path / name).is_file():
            cases += json.loads((path / name).read_text(encoding="utf-8"))["cases"]
    return cases


def client_options(case: dict[str, Any]) -> dict[str, Any]:
    """The case's client options; the region only chooses a host, and every request goes to the local server."""
    return {k: v for k, v in case["client"].items() if k != "region"}


def wire(request: RecordedRequest) -> Iterator[dict[str, Any]]:
    """A received request in the peer cases' form: one entry per v2 op, or one v1 request."""
    if request.path == "/api/v2/batch":
        for op in request.json()["batch"]:
            yield {"api": "v2", "op": op}
    elif request.path == "/api/v2/entity":
        yield {"api": "v2", "op": request.json()}
    else:
        entry: dict[str, Any] = {"api": "v1", "method": request.method, "path": request.path}
        body = request.json()
        if body is not None:
            entry["body"] = body
        yield entry


def run_message(server: LocalCustomerIO, client: Client, errors: Errors, message: dict[str, Any]
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """What reached the server for one raw Segment message, and every problem reported for it."""
    before = server.request_count
    reported_before = len(errors)
    problems: list[str] = []
    raw = json.dumps(message).encode()
    try:
        Dispatch(lambda on_error: client).send(1, message_for(message, raw))
    except Exception as exc:  # the importer's bad line (BadLine) or the call's ArgumentError
        problems.append(f"{type(exc).__name__}: {exc}")
    assert client.flush(timeout=10)
    problems += [f"{type(e).__name__}: {e}" for e, _ in errors[reported_before:]]
    return [entry for r in server.requests[before:] for entry in wire(r)], problems


def make_case_client(server: LocalCustomerIO, errors: Errors, case: dict[str, Any]) -> Client:
    return Client(SITE_ID, API_KEY, host=server.url, sync_mode=True, on_error=errors,
                  max_requests_per_second=None, max_retries=0, **client_options(case))
