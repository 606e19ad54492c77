"""The default stack's call modules, driven without sockets: a MockTransport bottom, virtual time.

What each promises its users: the fallback answers for any transport failure below it, the
deadline is fixed (and enforced) before admission, the breaker reports its transitions, and a
retry happens only when it is safe (idempotency, body, Retry-After, deadline, budget).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import tenacity
from opentelemetry import trace

import meshclient
from meshclient.hooks import BreakerTransition, BudgetExhausted, Event, RetryScheduled
from meshclient.stack import (
    DEFAULT_STACK,
    AdmissionModule,
    BreakerModule,
    RetryModule,
    service_param,
)
from meshclient.testing import FakeClock

ENDPOINTS = ("127.0.0.1:8001", "127.0.0.1:8002")
NO_BACKOFF = meshclient.Retry(attempts=3, backoff=0.0, max_backoff=0.0)

Handler = Callable[[httpx.Request], httpx.Response]


def transport(
    handler: Handler,
    clock: FakeClock,
    *,
    policy: meshclient.Policy | None = None,
    stack: meshclient.Stack | None = None,
    events: list[Event] | None = None,
    tracer: Tracer | None = None,
    **service: Any,
) -> meshclient.MeshTransport:
    """The mesh over ``handler`` (no sockets), on virtual time; hooks append to ``events``,
    spans go to ``tracer``."""
    return meshclient.MeshTransport(
        {"users": meshclient.Service(list(ENDPOINTS), **service)},
        policy=policy if policy is not None else meshclient.Policy(retry=NO_BACKOFF),
        stack=stack,
        transport=httpx.MockTransport(handler),
        telemetry=meshclient.Telemetry(
            hooks=[] if events is None else [events.append], tracer_provider=tracer
        ),
        clock=clock,
        rng=random.Random(7),
    )


class Span(trace.NonRecordingSpan):
    """A span that keeps its kind, parent, attributes and events (the API alone, no SDK)."""

    def __init__(
        self, span_id: int, kind: trace.SpanKind, parent: trace.Span, attributes: Any
    ) -> None:
        super().__init__(
            trace.SpanContext(1, span_id, is_remote=False, trace_flags=trace.TraceFlags(1))
        )
        self.kind = kind
        self.parent = parent
        self.attributes = dict(attributes or {})
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ended = False

    def is_recording(self) -> bool:
        return not self.ended

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Any) -> None:
        self.attributes.update(attributes)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self.events.append((name, dict(attributes or {})))

    def end(self, end_time: int | None = None) -> None:
        self.ended = True


class Tracer(trace.Tracer, trace.TracerProvider):
    """A tracer (and its own provider) keeping every span it started, in order."""

    def __init__(self) -> None:
        self.spans: list[Span] = []

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return self

    def start_span(  # type: ignore[override]
        self, name: str, context: Any = None, kind: Any = trace.SpanKind.INTERNAL,
        attributes: Any = None, *args: Any, **kwargs: Any,
    ) -> trace.Span:  # fmt: skip
        parent = trace.get_current_span(context)
        span = Span(len(self.spans) + 1, kind, parent, attributes)
        self.spans.append(span)
        return span

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class Recorder:
    """A handler answering from a script (statuses, responses, errors; then 200), recording
    what was sent."""

    def __init__(self, *answers: int | httpx.Response | BaseException) -> None:
        self.answers = list(answers)
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(request)
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(answer)

    @property
    def endpoints(self) -> list[str]:
        return [request.url.netloc.decode() for request in self.sent]


class Rule:
    """An admission rule that records admit and release per call."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def admit(self, call: Any) -> None:
        self.log.append("admit")

    def release(self, call: Any) -> None:
        self.log.append(f"release:{call.outcome}")


# -- service_param, module values ---------------------------------------------------------


def test_service_param_admits_with_the_rule_each_service_was_given(clock) -> None:
    """``AdmissionModule(role, service_param(name))`` reads ``Service.<name>`` per service and
    prints as what it reads; a service without that rule leaves the module out."""
    read = service_param("bulkhead")
    assert "service_param('bulkhead')" in repr(AdmissionModule("bulkhead", read))
    rule = Rule()
    stack = DEFAULT_STACK.replace("bulkhead", AdmissionModule("bulkhead", read))
    with httpx.Client(transport=transport(Recorder(), clock, stack=stack, bulkhead=rule)) as http:
        assert http.get("http://users/").status_code == 200
        assert http.get("http://users/").status_code == 200
    assert rule.log == ["admit", "release:success"] * 2
    with httpx.Client(transport=transport(Recorder(), clock, stack=stack)) as http:
        assert http.get("http://users/").status_code == 200


def test_breaker_and_retry_modules_print_as_made_and_read_service_breaker() -> None:
    """A fresh ``BreakerModule()`` is the admission module of role 'breaker' reading
    ``Service.breaker``: it can stand in for (or be compared with) the default one."""
    module = BreakerModule()
    assert module.role == "breaker"
    assert repr(module) == "BreakerModule()"
    assert repr(RetryModule()) == "RetryModule()"
    rule = Rule()
    assert module.admission(SimpleNamespace(service=SimpleNamespace(breaker=rule))) is rule
    assert "service_param('breaker')" in repr(module.admission)


# -- breaker reporting -------------------------------------------------------------------------


def test_a_circuit_breaker_reports_its_transitions_until_the_client_closes(clock) -> None:
    """Each transition of a service's ``CircuitBreaker`` is one hook event (and shows in the
    snapshot under 'breaker'); a closed client stops listening to a breaker that lives on."""
    breaker = meshclient.CircuitBreaker(
        window_size=2, minimum_calls=2, open_duration=10.0, half_open_calls=1, clock=clock
    )
    events: list[Event] = []
    handler = Recorder(503, 503)
    mesh = transport(
        handler, clock, policy=meshclient.Policy(retry=None), events=events, breaker=breaker
    )
    with httpx.Client(transport=mesh) as http:
        assert http.get("http://users/").status_code == 503
        assert http.get("http://users/").status_code == 503
        with pytest.raises(meshclient.CircuitOpenError):
            http.get("http://users/")
        assert mesh.snapshot()["services"]["users"]["breaker"]["state"] == "open"
        clock.advance(10.0)
        assert http.get("http://users/").status_code == 200
    transitions = [e for e in events if isinstance(e, BreakerTransition)]
    assert [(e.service, e.from_state, e.to_state) for e in transitions] == [
        ("users", "closed", "open"),
        ("users", "open", "half_open"),
        ("users", "half_open", "closed"),
    ]
    assert len(handler.sent) == 3
    # The client is closed; the breaker it used is not, and tells it nothing more.
    breaker.on_result(False, 0.0)
    breaker.on_result(False, 0.0)
    assert breaker.state == "open"
    assert len([e for e in events if isinstance(e, BreakerTransition)]) == 3


def test_a_cancelled_call_is_no_failure_for_the_breaker(clock) -> None:
    """A caller going away (KeyboardInterrupt) says nothing about the service: the half-open
    breaker's one trial permit comes back, and the next call's success closes it."""
    breaker = meshclient.CircuitBreaker(
        window_size=1, minimum_calls=1, open_duration=10.0, half_open_calls=1, clock=clock
    )
    handler = Recorder(503, KeyboardInterrupt(), 200)
    mesh = transport(handler, clock, policy=meshclient.Policy(retry=None), breaker=breaker)
    with httpx.Client(transport=mesh) as http:
        assert http.get("http://users/").status_code == 503
        assert breaker.state == "open"
        clock.advance(10.0)
        with pytest.raises(KeyboardInterrupt):
            http.get("http://users/")
        assert breaker.state == "half_open"
        assert http.get("http://users/").status_code == 200
    assert breaker.state == "closed"
    assert len(handler.sent) == 3


def test_a_breaker_of_its_own_kind_is_used_as_an_admission_rule(clock) -> None:
    """``Service.breaker`` may be any admission rule, not only a ``CircuitBreaker``: it admits
    and releases every call, and its snapshot shows under 'breaker'."""

    class Breaker(Rule):
        def snapshot(self) -> dict[str, Any]:
            return {"calls": self.log.count("admit")}

    breaker = Breaker()
    mesh = transport(Recorder(), clock, breaker=breaker)
    with httpx.Client(transport=mesh) as http:
        assert http.get("http://users/").status_code == 200
        assert mesh.snapshot()["services"]["users"]["breaker"] == {"calls": 1}
    assert breaker.log == ["admit", "release:success"]


# -- retry: when a request may be sent again ---------------------------------------------------


def test_only_a_request_safe_to_repeat_is_resent_after_reaching_a_server(clock) -> None:
    """A 503 or a read error means the request may have been handled: it is resent only when
    idempotent (by method, an Idempotency-Key, or ``Policy.idempotent=True``), never when the
    policy says ``idempotent=False``; a request never sent is always resent."""
    not_idempotent = meshclient.Policy(retry=NO_BACKOFF, idempotent=False)
    idempotent = meshclient.Policy(retry=NO_BACKOFF, idempotent=True)
    cases: list[tuple[str, dict[str, Any], Any, int]] = [
        ("GET", {}, 503, 2),
        ("GET", {"extensions": {"meshclient.policy": not_idempotent}}, 503, 1),
        ("GET", {"extensions": {"meshclient.policy": not_idempotent}}, httpx.ReadError("x"), 1),
        ("POST", {}, 503, 1),
        ("POST", {}, httpx.ReadError("x"), 1),
        ("GET", {}, httpx.ReadError("x"), 2),
        ("POST", {"headers": {"Idempotency-Key": "k1"}}, 503, 2),
        ("POST", {"headers": {"Idempotency-Key": "k1"}}, httpx.RemoteProtocolError("x"), 2),
        ("POST", {"extensions": {"meshclient.policy": idempotent}}, 503, 2),
        ("POST", {}, httpx.ConnectError("refused"), 2),
        ("POST", {"extensions": {"meshclient.policy": not_idempotent}}, httpx.ConnectError("x"), 2),
    ]
    for method, kwargs, first, sends in cases:
        handler = Recorder(first)
        with (
            httpx.Client(transport=transport(handler, clock)) as http,
            contextlib.suppress(httpx.TransportError),
        ):
            http.request(method, "http://users/", content=b"body", **kwargs)
        assert len(handler.sent) == sends, (method, kwargs, first)
        if sends == 2:
            assert handler.sent[1].content == b"body"
            # The retry went to the other endpoint, not the one that just failed.
            assert handler.endpoints[0] != handler.endpoints[1], (method, kwargs, first)


def test_a_streamed_body_is_not_sent_twice(clock) -> None:
    """A generator body was consumed by the first attempt: even an idempotent request with one
    is not resent after a 503."""

    def chunks() -> Iterator[bytes]:
        yield b"part"

    handler = Recorder(503)
    policy = meshclient.Policy(retry=NO_BACKOFF, idempotent=True)
    with httpx.Client(transport=transport(handler, clock, policy=policy)) as http:
        assert http.put("http://users/", content=chunks()).status_code == 503
    assert len(handler.sent) == 1


# -- retry: Retry-After, deadline, budget ------------------------------------------------------


def retry_after(status: int, *values: str) -> httpx.Response:
    return httpx.Response(status, headers=[("Retry-After", value) for value in values])


@pytest.mark.parametrize(
    ("answer", "max_retry_after", "sends", "waited"),
    [
        (retry_after(503, "2"), 5.0, 2, 2.0),  # the server's wait, not the backoff
        (retry_after(503, "1", "3"), 5.0, 2, 1.0),  # the first Retry-After counts
        (retry_after(429, "1.5"), 5.0, 2, 1.5),
        (httpx.Response(429), 5.0, 1, 0.0),  # 429 without Retry-After: no retry
        (retry_after(503, "7"), 5.0, 1, 0.0),  # longer than max_retry_after: give up now
        (retry_after(503, "7"), 10.0, 2, 7.0),
        (retry_after(503, "soon"), 5.0, 2, 0.0),  # garbage: the backoff (0 here) instead
        (httpx.Response(500), 5.0, 1, 0.0),  # not in Retry.statuses
    ],
)
def test_retry_after_sets_the_wait_within_max_retry_after(
    clock, answer, max_retry_after, sends, waited
) -> None:
    handler = Recorder(answer)
    retry = meshclient.Retry(
        attempts=3, backoff=0.0, max_backoff=0.0, max_retry_after=max_retry_after
    )
    before = clock()
    with httpx.Client(
        transport=transport(handler, clock, policy=meshclient.Policy(retry=retry))
    ) as http:
        status = http.get("http://users/").status_code
    assert len(handler.sent) == sends
    assert status == (200 if sends == 2 else answer.status_code)
    assert clock() - before == pytest.approx(waited)


def test_a_retry_after_date_is_a_wait_from_now_on_the_wall_clock(monkeypatch, clock) -> None:
    """An HTTP-date ``Retry-After`` counts from the wall clock (``time.time``) now."""
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)  # 2023-11-14 22:13:20 UTC
    handler = Recorder(retry_after(503, "Tue, 14 Nov 2023 22:13:23 GMT"))
    with httpx.Client(transport=transport(handler, clock)) as http:
        assert http.get("http://users/").status_code == 200
    assert len(handler.sent) == 2
    assert clock() == 103.0


def test_without_a_retry_policy_each_request_is_sent_once_quietly(clock, caplog) -> None:
    """``Policy(retry=None)``: a failed attempt is the answer; nothing is logged about it."""
    for answer in (503, httpx.ConnectError("refused")):
        handler = Recorder(answer)
        policy = meshclient.Policy(retry=None)
        with (
            httpx.Client(transport=transport(handler, clock, policy=policy)) as http,
            contextlib.suppress(httpx.ConnectError),
        ):
            http.get("http://users/")
        assert len(handler.sent) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(("took", "sends"), [(0.5, 1), (0.6, 1), (0.4, 2)])
def test_no_retry_whose_wait_reaches_the_deadline(clock, took, sends) -> None:
    """A retry is only scheduled if it can start before the deadline (1 s here): a wait
    (Retry-After: 0.5) ending exactly at the deadline is refused too, and the last response is
    returned as it is; the call's span says why it was not retried."""
    events: list[Event] = []
    tracer = Tracer()
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if len(sent) > 1:
            return httpx.Response(200)
        clock.advance(took)
        return retry_after(503, "0.5")

    policy = meshclient.Policy(timeout=1.0, retry=NO_BACKOFF)
    mesh = transport(handler, clock, policy=policy, events=events, tracer=tracer)
    with httpx.Client(transport=mesh) as http:
        status = http.get("http://users/").status_code
    assert (len(sent), status) == (sends, 503 if sends == 1 else 200)
    assert len([e for e in events if isinstance(e, RetryScheduled)]) == sends - 1
    stopped = (
        "meshclient.deadline.exceeded",
        {"meshclient.attempt": 1, "meshclient.retry.delay": 0.5},
    )
    assert (stopped in tracer.spans[0].events) is (sends == 1)


def test_every_call_deposits_and_every_retry_withdraws_from_the_budget(clock) -> None:
    """Half a retry per call and no reserve: two calls that needed no retry pay for the retries
    of the next two, and the fifth call's retry is refused; the snapshot shows the books."""
    budget = meshclient.RetryBudget(ratio=0.5, min_per_second=0.0, clock=clock)
    events: list[Event] = []
    handler = Recorder(200, 200, 503, 200, 503, 200, 503)
    mesh = transport(handler, clock, events=events, retry_budget=budget)
    with httpx.Client(transport=mesh) as http:
        statuses = [http.get("http://users/").status_code for _ in range(5)]
        books = mesh.snapshot()["services"]["users"]["retry_budget"]
    assert statuses == [200, 200, 200, 200, 503]
    assert len(handler.sent) == 7
    assert (books["deposits"], books["withdrawals"]) == (5.0, 2.0)
    refused = [e for e in events if isinstance(e, BudgetExhausted)]
    assert refused == [BudgetExhausted(service="users", method="GET", attempt=1, reason="503")]


# -- retry: a tenacity wait strategy ----------------------------------------------------------


class Spy(tenacity.wait.wait_base):
    """A tenacity wait strategy that records what it is shown and answers from a script."""

    def __init__(self, *delays: float) -> None:
        self.delays = list(delays)
        self.seen: list[dict[str, Any]] = []

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        assert outcome is not None
        self.seen.append(
            {
                "attempt": retry_state.attempt_number,
                "outcome_attempt": outcome.attempt_number,
                "outcome": repr(outcome.exception()) if outcome.failed else outcome.result(),
                "since_start": retry_state.seconds_since_start,
                "idle_for": retry_state.idle_for,
            }
        )
        assert isinstance(retry_state.retry_object, tenacity.BaseRetrying)
        assert (retry_state.fn, retry_state.args, retry_state.kwargs) == (None, (), {})
        return self.delays.pop(0)


def test_a_tenacity_wait_strategy_sees_the_calls_attempts_as_tenacity_would(clock) -> None:
    """``Retry(wait=...)`` gets a ``RetryCallState`` as tenacity itself builds it: attempt
    numbers, each attempt's outcome (status or error), time since the call started, the time
    slept so far; a negative wait means no wait at all."""
    spy = Spy(0.5, 0.25, -1.0)
    answers: list[Any] = [httpx.ConnectError("refused"), 503, 503, 200]
    events: list[Event] = []

    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(0.25)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    policy = meshclient.Policy(retry=meshclient.Retry(attempts=4, wait=spy))
    with httpx.Client(transport=transport(handler, clock, policy=policy, events=events)) as http:
        assert http.get("http://users/").status_code == 200
    assert spy.seen == [
        {
            "attempt": 1,
            "outcome_attempt": 1,
            "outcome": "ConnectError('refused')",
            "since_start": pytest.approx(0.25),
            "idle_for": 0.0,
        },
        {
            "attempt": 2,
            "outcome_attempt": 2,
            "outcome": 503,
            "since_start": pytest.approx(1.0),
            "idle_for": 0.5,
        },
        {
            "attempt": 3,
            "outcome_attempt": 3,
            "outcome": 503,
            "since_start": pytest.approx(1.5),
            "idle_for": 0.75,
        },
    ]
    delays = [e.delay for e in events if isinstance(e, RetryScheduled)]
    assert delays == [0.5, 0.25, 0.0]
    assert clock() == pytest.approx(100.0 + 4 * 0.25 + 0.75)


# -- fallback ----------------------------------------------------------------------------------


def test_a_fallback_answers_for_any_transport_failure_below_it(clock) -> None:
    """Retries exhausted on an error, and a refusal by admission (an open breaker) before any
    attempt, both reach ``Policy.fallback``; it may still decline (``None``) and the error is
    raised; an error that is not a transport failure (a bug) never reaches it."""
    seen: list[str] = []

    def fallback(request: httpx.Request, error: Exception) -> httpx.Response | None:
        seen.append(f"{request.method} {type(error).__name__}")
        if request.method == "DELETE":
            return None
        return httpx.Response(200, text="stale")

    breaker = meshclient.CircuitBreaker(window_size=1, minimum_calls=1, clock=clock)
    policy = meshclient.Policy(retry=NO_BACKOFF, fallback=fallback)
    failing = Recorder(*[httpx.ConnectError("refused")] * 3)
    with httpx.Client(transport=transport(failing, clock, policy=policy, breaker=breaker)) as http:
        assert http.get("http://users/").text == "stale"
        assert len(failing.sent) == 3
        assert breaker.state == "open"
        assert http.get("http://users/").text == "stale"
        with pytest.raises(meshclient.CircuitOpenError):
            http.delete("http://users/")
    assert seen == ["GET ConnectError", "GET CircuitOpenError", "DELETE CircuitOpenError"]
    assert len(failing.sent) == 3

    def bug(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug")

    with (
        httpx.Client(transport=transport(bug, clock, policy=policy)) as http,
        pytest.raises(RuntimeError, match="bug"),
    ):
        http.get("http://users/")
    assert len(seen) == 3
    no_fallback = meshclient.Policy(retry=None, fallback=None)
    with (
        httpx.Client(transport=transport(Recorder(httpx.ConnectError("x")), clock)) as http,
        pytest.raises(httpx.ConnectError),
    ):
        http.get("http://users/", extensions={"meshclient.policy": no_fallback})


# -- deadline ----------------------------------------------------------------------------------


def test_the_deadline_is_the_sooner_of_timeout_total_and_the_inherited_one() -> None:
    """The attempt is told the time left of whichever deadline comes first: ``Timeout.total``
    or the one inherited from ``deadline_scope`` (what a server passes down)."""
    clock = FakeClock(time.monotonic())  # deadline_scope measures on time.monotonic
    sent: list[float | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("x-meshclient-timeout-ms")
        sent.append(None if header is None else int(header) / 1000)
        return httpx.Response(200)

    untimed = {"meshclient.policy": meshclient.Policy(timeout=None)}
    policy = meshclient.Policy(timeout=2.0)
    started = time.monotonic()
    with httpx.Client(transport=transport(handler, clock, policy=policy)) as http:
        http.get("http://users/")
        with meshclient.deadline_scope(1.0):
            http.get("http://users/")
        with meshclient.deadline_scope(30.0):
            http.get("http://users/")
        http.get("http://users/", extensions=untimed)
        with meshclient.deadline_scope(3.0):
            http.get("http://users/", extensions=untimed)
    spent = time.monotonic() - started
    assert sent[0] == 2.0
    assert 1.0 - 0.001 <= sent[1] <= 1.0 + spent  # type: ignore[operator]
    assert sent[2] == 2.0
    assert sent[3] is None
    assert 3.0 - 0.001 <= sent[4] <= 3.0 + spent  # type: ignore[operator]


def test_a_call_whose_deadline_is_gone_fails_before_admission(clock) -> None:
    """Nothing is admitted, sent or retried for a call started past its inherited deadline;
    the error names where the deadline came from."""
    rule = Rule()
    handler = Recorder()
    mesh = transport(handler, FakeClock(time.monotonic()), bulkhead=rule)
    with (
        httpx.Client(transport=mesh) as http,
        meshclient.deadline_scope(-3600.0),
        pytest.raises(meshclient.DeadlineExceeded) as info,
    ):
        http.get("http://users/")
    assert str(info.value) == (
        "the deadline inherited from the request being handled exceeded after 0 attempt(s) "
        "to service 'users'"
    )
    assert (rule.log, handler.sent) == ([], [])


def test_a_deadline_exactly_at_timeout_total_is_the_clients_own_and_is_enforced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the inherited deadline is no earlier than ``Timeout.total``'s, the timeout is the
    client's own (so it is named, and counts as evidence); a call starting exactly at its
    deadline fails at once, before admission."""
    with contextlib.ExitStack() as scopes:
        monkeypatch.setattr(time, "monotonic", lambda: 1000.0)
        scopes.enter_context(meshclient.deadline_scope(2.0))  # ends at exactly 1002.0
        monkeypatch.undo()
        clock = FakeClock(1000.0)

        def slow(request: httpx.Request) -> httpx.Response:
            clock.advance(2.0)
            raise httpx.ReadTimeout("slow", request=request)

        policy = meshclient.Policy(timeout=2.0, retry=None)
        with (
            httpx.Client(transport=transport(slow, clock, policy=policy)) as http,
            pytest.raises(meshclient.DeadlineExceeded) as info,
        ):
            http.get("http://users/")
        assert str(info.value) == "deadline of 2.0s exceeded after 1 attempt(s) to service 'users'"

        assert clock() == 1002.0
        handler, rule = Recorder(), Rule()
        with (
            httpx.Client(transport=transport(handler, clock, policy=policy, bulkhead=rule)) as http,
            pytest.raises(meshclient.DeadlineExceeded, match=r"inherited .* after 0 attempt"),
        ):
            http.get("http://users/")
        assert (rule.log, handler.sent) == ([], [])


# -- call telemetry --------------------------------------------------------------------------


def test_one_span_per_call_with_its_attempts_outcome_and_inherited_deadline() -> None:
    """Each call has one INTERNAL span, parent of its attempts' CLIENT spans, ended with the
    attempt count, the outcome and whether the deadline came from the caller's caller."""
    tracer = Tracer()
    clock = FakeClock(time.monotonic())
    mesh = meshclient.MeshTransport(
        {"users": meshclient.Service(list(ENDPOINTS))},
        policy=meshclient.Policy(retry=NO_BACKOFF, timeout=60.0),
        transport=httpx.MockTransport(Recorder(503)),
        telemetry=meshclient.Telemetry(tracer_provider=tracer),
        clock=clock,
    )
    with httpx.Client(transport=mesh) as http, meshclient.deadline_scope(30.0):
        assert http.get("http://users/").status_code == 200
    call, *attempts = tracer.spans
    assert call.kind is trace.SpanKind.INTERNAL
    assert [span.kind for span in attempts] == [trace.SpanKind.CLIENT] * 2
    assert all(span.parent is call for span in attempts)
    assert all(span.ended for span in tracer.spans)
    assert call.attributes["meshclient.attempts"] == 2
    assert call.attributes["meshclient.outcome"] == "success"
    assert call.attributes["meshclient.deadline.inherited"] is True
