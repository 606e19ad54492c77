"""Absurd values and names fail when configured, naming the field and the value; nothing a
module or the mesh raises mid-call leaves admission held."""

from __future__ import annotations

import gc
from typing import Any

import httpx
import pytest

import meshclient
from meshclient.stack import Attempt, AttemptModule

ENDPOINTS = ["127.0.0.1:8001"]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: meshclient.Timeout(total=1e306), ValueError, r"Timeout.total .* <= 1e\+06"),
        (
            lambda: meshclient.Retry(max_retry_after=float("inf")),
            ValueError,
            r"Retry.max_retry_after must be a finite number",
        ),
        (
            lambda: meshclient.deadline_scope(float("inf")).__enter__(),
            ValueError,
            "seconds must be a finite number",
        ),
        (
            lambda: meshclient.Client(deadline_header="content-length"),
            ValueError,
            r"deadline_header .* 'content-length'",
        ),
        (lambda: meshclient.Client(deadline_header="Host"), ValueError, "'Host'"),
        (
            lambda: meshclient.Client(services={"users": ENDPOINTS, "USERS": ENDPOINTS}),
            ValueError,
            "differ only in case",
        ),
        (
            lambda: meshclient.Client(services={"users:8080": ENDPOINTS}),
            ValueError,
            r"'users:8080' is not a host name",
        ),
        (lambda: meshclient.Client(services={"my users": ENDPOINTS}), ValueError, "host name"),
        (lambda: meshclient.Client(services={"users/v1": ENDPOINTS}), ValueError, "host name"),
        (
            lambda: meshclient.Telemetry(redact_query="token"),
            TypeError,
            "Telemetry.redact_query must be a collection",
        ),
    ],
)
def test_bad_input_fails_when_configured(build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()


def test_a_port_on_a_service_url_is_refused_not_ignored() -> None:
    with (
        meshclient.Client(services={"users": ENDPOINTS}, transport=httpx.MockTransport(ok)) as c,
        pytest.raises(httpx.InvalidURL, match="'users' is a mesh service"),
    ):
        c.get("http://users:8080/x")


def test_a_module_that_raises_mid_call_leaves_no_slot_held() -> None:
    """Any exception inside the stack ends the call: admission is given back all the same."""

    class Flaky(AttemptModule):
        role = "flaky"
        calls = 0

        def on_attempt(self, attempt: Attempt) -> None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OverflowError("a bug in a module")

    bulkhead = meshclient.Bulkhead(1)
    with meshclient.Client(
        services={"users": meshclient.Service(ENDPOINTS, bulkhead=bulkhead)},
        stack=meshclient.DEFAULT_STACK.insert_after("balancer", Flaky()),
        transport=httpx.MockTransport(ok),
    ) as client:
        with pytest.raises(OverflowError):
            client.get("http://users/")
        assert bulkhead.snapshot()["active"] == 0
        assert client.get("http://users/").status_code == 200


def test_secret_query_parameters_are_redacted_and_the_list_is_yours() -> None:
    from meshclient._telemetry import redact_url

    url = httpx.URL("http://users/x?token=t&Access_Token=a&page=2&custom=c")
    assert redact_url(url) == (
        "http://users/x?token=REDACTED&Access_Token=REDACTED&page=2&custom=c"
    )
    telemetry = meshclient.Telemetry(
        redact_query=meshclient.Telemetry.default_redact_query | {"Custom"}
    )
    assert redact_url(url, telemetry.redact_query).endswith("page=2&custom=REDACTED")


def test_a_streamed_response_dropped_unclosed_warns_and_gives_its_slot_back(
    backend_factory,
) -> None:
    backend = backend_factory("b")
    bulkhead = meshclient.Bulkhead(1)
    with meshclient.Client(
        services={"users": meshclient.Service([backend.address], bulkhead=bulkhead)}
    ) as client:
        response = client.send(client.build_request("GET", "http://users/"), stream=True)
        assert bulkhead.snapshot()["active"] == 1
        del response
        with pytest.warns(ResourceWarning, match="never closed"):
            gc.collect()
        # The next call ends the dropped attempt first, so it finds the slot free.
        assert client.get("http://users/").status_code == 200
        assert bulkhead.snapshot()["active"] == 0
