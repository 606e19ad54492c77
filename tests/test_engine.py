"""The engine and the default stack without sockets: a MockTransport bottom and virtual time.

Every phase of every module runs in the order the stack promises, ends run exactly once for
what started, and nothing the stack takes (bulkhead slots, breaker permits, budget, outstanding
requests) is kept after a call ends, whatever the outcome: these are the engine's contract.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import tenacity

import meshclient
from meshclient.stack import Attempt, AttemptModule, Call, CallModule
from meshclient.testing import FakeClock

from helpers import CallEnds

ENDPOINTS = ("127.0.0.1:8001", "127.0.0.1:8002")
FAST_RETRY = meshclient.Retry(attempts=3, backoff=0.01, max_backoff=0.02)

Handler = Callable[[httpx.Request], httpx.Response]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="ok")


def client(
    handler: Handler,
    clock: FakeClock,
    *,
    stack: meshclient.Stack | None = None,
    policy: meshclient.Policy | None = None,
    services: dict[str, Any] | None = None,
    **service: Any,
) -> httpx.Client:
    """A plain httpx client over the mesh, whose bottom is ``handler``: no sockets at all."""
    if services is None:
        services = {"users": meshclient.Service(list(ENDPOINTS), **service)}
    transport = meshclient.MeshTransport(
        services,
        policy=policy if policy is not None else meshclient.Policy(retry=FAST_RETRY),
        stack=stack,
        transport=httpx.MockTransport(handler),
        clock=clock,
        rng=random.Random(7),
    )
    return httpx.Client(transport=transport)


class Log(list[str]):
    """What recording modules saw, in order."""


class RecordCall(CallModule):
    def __init__(self, role: str, log: Log, *, step: Any = None) -> None:
        self.role = role
        self.log = log
        self.step = step

    def on_call(self, call: Call) -> Any:
        self.log.append(f"{self.role}.on_call")
        return self.step

    def retry(self, call: Call, attempt: Attempt) -> float | None:
        self.log.append(f"{self.role}.retry")
        return None

    def on_call_end(self, call: Call) -> None:
        self.log.append(f"{self.role}.on_call_end:{call.outcome}")


class RecordAttempt(AttemptModule):
    def __init__(self, role: str, log: Log) -> None:
        self.role = role
        self.log = log

    def on_attempt(self, attempt: Attempt) -> None:
        self.log.append(f"{self.role}.on_attempt:{attempt.number}")

    def on_outcome(self, attempt: Attempt) -> None:
        self.log.append(f"{self.role}.on_outcome:{attempt.status}")

    def on_attempt_end(self, attempt: Attempt) -> None:
        self.log.append(f"{self.role}.on_attempt_end:{attempt.number}")


def recording_stack(log: Log) -> meshclient.Stack:
    """The default stack with recorders above and below its call and attempt modules."""
    return (
        meshclient.DEFAULT_STACK.insert_before("fallback", RecordCall("c1", log))
        .insert_after("retry", RecordCall("c2", log))
        .insert_before("attempt_telemetry", RecordAttempt("a1", log))
        .insert_after("attempt_timeout", RecordAttempt("a2", log))
    )


# -- phase order -----------------------------------------------------------------------------


def test_phases_run_outer_to_inner_going_in_and_inner_to_outer_coming_back(clock) -> None:
    log = Log()
    answers = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers))

    with client(handler, clock, stack=recording_stack(log)) as http:
        assert http.get("http://users/").status_code == 200
    assert log == [
        "c1.on_call",
        "c2.on_call",
        "a1.on_attempt:1",
        "a2.on_attempt:1",
        "a2.on_outcome:503",
        "a1.on_outcome:503",
        "c2.retry",  # innermost first: c2 is asked, then the retry module, which retries
        "a2.on_attempt_end:1",
        "a1.on_attempt_end:1",
        "a1.on_attempt:2",
        "a2.on_attempt:2",
        "a2.on_outcome:200",
        "a1.on_outcome:200",
        "c2.retry",
        "c1.retry",
        "a2.on_attempt_end:2",
        "a1.on_attempt_end:2",
        "c2.on_call_end:success",
        "c1.on_call_end:success",
    ]


def test_the_first_retry_phase_that_answers_decides(clock) -> None:
    """c2 sits below the retry module: it is asked first, and once it answers nobody else is."""

    class RetryOnce(CallModule):
        role = "retry_once"

        def retry(self, call: Call, attempt: Attempt) -> float | None:
            return 0.5 if attempt.number == 1 else None

    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.netloc.decode())
        return httpx.Response(200)

    stack = meshclient.DEFAULT_STACK.insert_after("retry", RetryOnce())
    start = clock()
    with client(handler, clock, stack=stack) as http:
        assert http.get("http://users/").status_code == 200
    assert len(sent) == 2
    assert sent[0] != sent[1]  # the second attempt avoided the first endpoint
    assert clock() - start == pytest.approx(0.5)  # the wait ran on virtual time


def test_a_refusing_module_ends_only_the_modules_above_it(clock) -> None:
    log = Log()

    class Refuse(CallModule):
        role = "refuse"

        def on_call(self, call: Call) -> None:
            raise meshclient.MeshError("no", request=call.request)

        def on_call_end(self, call: Call) -> None:
            log.append("refuse.on_call_end")

    stack = recording_stack(log).insert_after("deadline", Refuse())
    with client(ok, clock, stack=stack) as http, pytest.raises(meshclient.MeshError, match="no"):
        http.get("http://users/")
    assert log == ["c1.on_call", "c1.on_call_end:error"]


class Queued(CallModule):
    """Queues every call: its ``Wait`` runs ``wait(timeout)`` (a sync client's only)."""

    role = "queued"

    def __init__(self, wait: Callable[[float | None], None]) -> None:
        self.wait = wait

    def on_call(self, call: Call) -> Queued:
        return self

    async def wait_async(self, timeout: float | None) -> None:
        raise AssertionError("a sync client waits synchronously")


def test_a_wait_is_waited_with_the_time_the_deadline_leaves(clock) -> None:
    waited: list[float | None] = []

    def wait(timeout: float | None) -> None:
        waited.append(timeout)
        clock.advance(0.25)

    stack = meshclient.DEFAULT_STACK.insert_after("bulkhead", Queued(wait))
    policy = meshclient.Policy(timeout=2.0)
    with client(ok, clock, stack=stack, policy=policy) as http:
        assert http.get("http://users/").status_code == 200
    assert waited == [pytest.approx(2.0)]


def test_a_module_can_answer_without_sending(clock) -> None:
    log = Log()
    cached = httpx.Response(200, text="cached")
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    stack = recording_stack(log).insert_after("deadline", RecordCall("cache", log, step=cached))
    with client(handler, clock, stack=stack) as http:
        assert http.get("http://users/").text == "cached"
    assert sent == []
    assert log == [
        "c1.on_call",
        "cache.on_call",
        "cache.on_call_end:success",
        "c1.on_call_end:success",
    ]


def test_a_recover_phase_answers_for_a_failed_call(clock) -> None:
    class Stale(CallModule):
        role = "stale"

        def recover(self, call: Call, error: Exception) -> httpx.Response:
            return httpx.Response(200, text=f"stale: {type(error).__name__}")

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    stack = meshclient.DEFAULT_STACK.insert_before("fallback", Stale())
    with client(handler, clock, stack=stack) as http:
        assert http.get("http://users/").text == "stale: ConnectError"


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(RuntimeError("cannot sign"), "error"), (KeyboardInterrupt(), "cancelled")],
)
def test_a_raising_attempt_module_ends_the_attempt_for_the_modules_that_ran(
    clock, error: BaseException, outcome: str
) -> None:
    """The modules above it saw the attempt start, so they see it end (a probe or a span must
    not be left open); an error fails the call, an interrupt (found by mutation testing)
    cancels it."""
    log = Log()

    class Broken(AttemptModule):
        role = "broken"

        def on_attempt(self, attempt: Attempt) -> None:
            raise error

    stack = recording_stack(log).insert_after("balancer", Broken())
    with client(ok, clock, stack=stack) as http, pytest.raises(type(error)) as info:
        http.get("http://users/")
    assert info.value is error
    assert log == [
        "c1.on_call",
        "c2.on_call",
        "a1.on_attempt:1",
        "a1.on_attempt_end:1",
        f"c2.on_call_end:{outcome}",
        f"c1.on_call_end:{outcome}",
    ]


def test_an_end_phase_that_raises_is_logged_and_the_others_still_run(clock, caplog) -> None:
    log = Log()

    class Raises(CallModule):
        role = "raises"

        def on_call_end(self, call: Call) -> None:
            raise RuntimeError("bug in a module")

    stack = recording_stack(log).insert_after("c1", Raises())
    with client(ok, clock, stack=stack) as http:
        assert http.get("http://users/").status_code == 200
    assert log[-1] == "c1.on_call_end:success"
    assert "bug in a module" in caplog.text


def test_a_caller_that_goes_away_ends_the_call_as_cancelled(clock) -> None:
    log = Log()

    def handler(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    with (
        client(handler, clock, stack=recording_stack(log)) as http,
        pytest.raises(KeyboardInterrupt),
    ):
        http.get("http://users/")
    assert log[-2:] == ["c2.on_call_end:cancelled", "c1.on_call_end:cancelled"]
    assert "a1.on_attempt_end:1" in log


# -- built per service -----------------------------------------------------------------------


def test_a_module_is_built_once_per_service_and_may_leave_a_service_out(clock) -> None:
    built: list[str] = []
    seen: list[str] = []

    class PerService(CallModule):
        role = "per_service"

        def build(self, service: Any) -> CallModule | None:
            built.append(service.name)
            return None if service.name == "orders" else Counting(service.name)

    class Counting(CallModule):
        role = "per_service"

        def __init__(self, name: str) -> None:
            self.name = name

        def on_call(self, call: Call) -> None:
            seen.append(self.name)

    services = {"users": list(ENDPOINTS), "orders": list(ENDPOINTS)}
    stack = meshclient.DEFAULT_STACK.insert_after("retry", PerService())
    with client(ok, clock, stack=stack, services=services) as http:
        http.get("http://users/")
        http.get("http://orders/")
        http.get("http://users/")
    assert sorted(built) == ["orders", "users"]
    assert seen == ["users", "users"]


def test_a_service_may_have_its_own_stack(clock) -> None:
    log = Log()
    services = {
        "users": meshclient.Service(list(ENDPOINTS), stack=recording_stack(log)),
        "orders": list(ENDPOINTS),
    }
    with client(ok, clock, services=services) as http:
        http.get("http://orders/")
        assert log == []
        http.get("http://users/")
        assert log[0] == "c1.on_call"


def test_without_a_balancer_nothing_chooses_an_endpoint(clock) -> None:
    stack = meshclient.DEFAULT_STACK.remove("balancer")
    with client(ok, clock, stack=stack) as http, pytest.raises(meshclient.MeshError) as info:
        http.get("http://users/")
    assert "chose an endpoint" in str(info.value)


# -- virtual time: deadlines and backoff ---------------------------------------------------


def test_a_timeout_past_the_deadline_is_deadline_exceeded(clock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(1.5)
        raise httpx.ReadTimeout("slow", request=request)

    policy = meshclient.Policy(timeout=1.0, retry=FAST_RETRY)
    with (
        client(handler, clock, policy=policy) as http,
        pytest.raises(meshclient.DeadlineExceeded) as info,
    ):
        http.get("http://users/")
    assert info.value.attempts == 1
    assert info.value.elapsed == pytest.approx(1.5)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


def test_no_attempt_starts_once_the_deadline_passed(clock) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        clock.advance(0.6)
        return httpx.Response(503)

    retry = meshclient.Retry(attempts=5, backoff=0.0, max_backoff=0.0)
    policy = meshclient.Policy(timeout=1.0, retry=retry)
    with client(handler, clock, policy=policy) as http:
        # 0.6 s, then 1.2 s: the deadline passed during the second attempt, so no third.
        assert http.get("http://users/").status_code == 503
    assert len(sent) == 2


def test_the_attempt_deadline_is_sent_as_the_time_left(clock) -> None:
    headers: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers["x-meshclient-timeout-ms"])
        return httpx.Response(200)

    policy = meshclient.Policy(timeout=meshclient.Timeout(total=0.3, attempt=2.0))
    with client(handler, clock, policy=policy) as http:
        http.get("http://users/")
        clock.advance(10)
        http.get(
            "http://users/",
            extensions={
                "meshclient.policy": meshclient.Policy(
                    timeout=meshclient.Timeout(total=5.0, attempt=0.2)
                )
            },
        )
    # Whole milliseconds, rounded down: the callee is never promised more than is left.
    assert 299 <= int(headers[0]) <= 300
    assert 199 <= int(headers[1]) <= 200


def test_a_header_the_caller_sent_is_replaced_on_every_attempt_not_doubled(clock) -> None:
    sent: list[list[tuple[bytes, bytes]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.raw)
        return httpx.Response(503 if len(sent) == 1 else 200)

    retry = meshclient.Retry(attempts=2, backoff=0.0, max_backoff=0.0)
    policy = meshclient.Policy(timeout=meshclient.Timeout(total=0.3), retry=retry)
    caller = {"X-Meshclient-Timeout-MS": "99999", "x-other": "kept"}
    with client(handler, clock, policy=policy) as http:
        assert http.get("http://users/", headers=caller).status_code == 200
    assert len(sent) == 2
    for headers in sent:
        names = [name.lower() for name, _ in headers]
        assert names.count(b"x-meshclient-timeout-ms") == 1
        assert int(dict(headers)[b"x-meshclient-timeout-ms"]) <= 300
        assert (b"x-other", b"kept") in headers


def test_no_endpoints_names_the_service(clock) -> None:
    class Empty(meshclient.Discovery):
        def start(self, updates: Any) -> None:
            updates(())

        def close(self) -> None:
            pass

    services = {"users": meshclient.Service(Empty())}
    with (
        client(ok, clock, services=services) as http,
        pytest.raises(meshclient.NoEndpointsError, match="'users'"),
    ):
        http.get("http://users/")


def test_a_tenacity_wait_strategy_runs_on_each_calls_own_state(clock) -> None:
    """``Retry(wait=...)``: tenacity's strategy sees this call's attempts only, call after call."""
    delays: list[float] = []
    answers: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answers.pop(0) if answers else 200)

    retry = meshclient.Retry(attempts=4, wait=tenacity.wait_incrementing(start=0.1, increment=0.2))
    with client(handler, clock, policy=meshclient.Policy(retry=retry)) as http:
        for _ in range(2):
            answers[:] = [503, 503]
            before = clock()
            assert http.get("http://users/").status_code == 200
            delays.append(round(clock() - before, 9))
    assert delays == [0.4, 0.4]  # 0.1 then 0.3, and the second call starts from 0.1 again


def test_retry_wait_must_be_a_strategy() -> None:
    with pytest.raises(TypeError, match=r"Retry\.wait must be a tenacity wait strategy"):
        meshclient.Retry(wait=0.5)  # type: ignore[arg-type]


# -- what callers and modules are told -------------------------------------------------------


class Outcomes(AttemptModule):
    """What each attempt looked like to ``on_outcome`` and ``on_attempt_end``."""

    role = "outcomes"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int | None, str | None, bool]] = []
        self.ended: list[tuple[int, bool]] = []
        self.deadlines: list[float | None] = []

    def on_attempt(self, attempt: Attempt) -> None:
        self.deadlines.append(attempt.deadline)

    def on_outcome(self, attempt: Attempt) -> None:
        error = attempt.error
        name = None if error is None else type(error).__name__
        self.seen.append((attempt.number, attempt.status, name, attempt.timed_out))

    def on_attempt_end(self, attempt: Attempt) -> None:
        self.ended.append((attempt.number, attempt.cancelled))


def watched(ends: CallEnds, outcomes: Outcomes) -> meshclient.Stack:
    """The default stack, ``ends`` outermost and ``outcomes`` innermost."""
    return meshclient.DEFAULT_STACK.insert_before("fallback", ends).insert_after(
        "attempt_timeout", outcomes
    )


def test_deadline_exceeded_names_the_deadline_the_attempts_the_endpoints_and_the_time(
    clock,
) -> None:
    """What a caller needs to see why ``Timeout.total`` ran out; an attempt cut off exactly at
    the deadline is a timeout of the mesh (``>=``, not ``>``)."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.netloc.decode())
        if len(sent) == 1:
            clock.advance(0.4)
            return httpx.Response(503)
        clock.set(101.0)  # exactly the call's deadline: started at 100 with 1 s in total
        raise httpx.ReadTimeout("slow", request=request)

    ends, outcomes = CallEnds(), Outcomes()
    policy = meshclient.Policy(timeout=meshclient.Timeout(total=1.0), retry=FAST_RETRY)
    with (
        client(handler, clock, stack=watched(ends, outcomes), policy=policy) as http,
        pytest.raises(meshclient.DeadlineExceeded) as info,
    ):
        http.get("http://users/path")
    error = info.value
    assert str(error) == "deadline of 1.0s exceeded after 2 attempt(s) to service 'users'"
    assert error.attempts == 2
    assert error.endpoints == tuple(sent)
    assert len(set(sent)) == 2
    assert error.elapsed == pytest.approx(1.0)
    assert isinstance(error.__cause__, httpx.ReadTimeout)
    assert outcomes.deadlines == [101.0, 101.0]
    assert outcomes.seen == [(1, 503, None, False), (2, None, "DeadlineExceeded", True)]
    (call,) = ends.calls
    assert (call.outcome, call.error, call.status) == ("error", error, None)


def test_a_failed_attempt_is_retried_and_only_its_own_bound_makes_it_timed_out(clock) -> None:
    """Network errors and timeouts are retried like 5xx; ``timed_out`` (what health and
    telemetry read) is set only when the attempt's deadline cut it off: not for a network
    error that came late, nor for a timeout of the bottom's own before that deadline."""
    script = [
        (0.0, httpx.ConnectError("refused")),
        (2.0, httpx.ReadError("reset")),  # past the 1 s bound, but not a timeout
        (0.5, httpx.ReadTimeout("the bottom's own read timeout")),  # before the bound
        (1.0, httpx.ReadTimeout("cut off")),  # exactly at the bound
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        took, error = script.pop(0)
        clock.advance(took)
        raise error

    ends, outcomes = CallEnds(), Outcomes()
    retry = meshclient.Retry(attempts=4, backoff=0.0, max_backoff=0.0)
    policy = meshclient.Policy(timeout=meshclient.Timeout(attempt=1.0), retry=retry)
    with (
        client(handler, clock, stack=watched(ends, outcomes), policy=policy) as http,
        pytest.raises(httpx.ReadTimeout, match="cut off"),
    ):
        http.get("http://users/")
    assert outcomes.seen == [
        (1, None, "ConnectError", False),
        (2, None, "ReadError", False),
        (3, None, "ReadTimeout", False),
        (4, None, "ReadTimeout", True),
    ]
    assert ends.calls[0].error is not None
    assert str(ends.calls[0].error) == "cut off"


def test_a_call_without_any_timeout_retries_a_timeout_of_the_bottom(clock) -> None:
    """No deadline at all: a timeout the bottom reports is an ordinary failed attempt."""
    answers: list[Any] = [httpx.ReadTimeout("slow"), httpx.Response(200)]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    ends, outcomes = CallEnds(), Outcomes()
    policy = meshclient.Policy(timeout=None, retry=FAST_RETRY)
    with client(handler, clock, stack=watched(ends, outcomes), policy=policy) as http:
        assert http.get("http://users/").status_code == 200
    assert outcomes.seen == [(1, None, "ReadTimeout", False), (2, 200, None, False)]
    assert (ends.calls[0].outcome, ends.calls[0].status) == ("success", 200)


@pytest.mark.parametrize("by", ["endpoint", "module"])
@pytest.mark.parametrize(("status", "outcome"), [(500, "server_error"), (499, "success")])
def test_a_call_ends_with_the_status_its_caller_got(clock, by, status, outcome) -> None:
    """Modules see the status the caller got, and a 5xx as a server error, whether an endpoint
    answered (its retries spent) or a module did (a cache, a stub)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status)

    ends = CallEnds()
    stack = meshclient.DEFAULT_STACK.insert_before("fallback", ends)
    if by == "module":
        stub = RecordCall("stub", Log(), step=httpx.Response(status, text="stubbed"))
        stack = stack.insert_after("deadline", stub)
    policy = meshclient.Policy(retry=None)
    with client(handler, clock, stack=stack, policy=policy) as http:
        assert http.get("http://users/").status_code == status
    (call,) = ends.calls
    attempts = 1 if by == "endpoint" else 0
    assert (call.status, call.outcome, call.attempts, call.error) == (
        status,
        outcome,
        attempts,
        None,
    )


def test_a_module_phase_that_raises_is_logged_and_the_call_goes_on(clock, caplog) -> None:
    """A bug in a module's ``on_outcome``, ``retry``, ``on_attempt_end`` or ``on_call_end``
    costs no call: it is logged with the phase named and its traceback; a retry phase that
    raised means no retry."""

    class Broken(CallModule):
        role = "broken"

        def retry(self, call: Call, attempt: Attempt) -> float | None:
            raise RuntimeError("bug in retry")

        def on_call_end(self, call: Call) -> None:
            raise RuntimeError("bug in on_call_end")

    class BrokenOutcome(AttemptModule):
        role = "broken_outcome"

        def on_outcome(self, attempt: Attempt) -> None:
            raise RuntimeError("bug in on_outcome")

        def on_attempt_end(self, attempt: Attempt) -> None:
            raise RuntimeError("bug in on_attempt_end")

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503)

    stack = meshclient.DEFAULT_STACK.insert_after("retry", Broken()).insert_after(
        "attempt_timeout", BrokenOutcome()
    )
    with client(handler, clock, stack=stack) as http:
        assert http.get("http://users/").status_code == 503
    assert len(sent) == 1  # the retry module, asked after it, would have retried a 503
    messages = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert messages == [
        (f"meshclient: on_outcome of {BrokenOutcome().on_outcome!r} raised; ignored", True),
        (f"meshclient: retry phase {Broken().retry!r} raised; no retry", True),
        (f"meshclient: on_attempt_end of {BrokenOutcome().on_attempt_end!r} raised; ignored", True),
        (f"meshclient: on_call_end of {Broken().on_call_end!r} raised; ignored", True),
    ]


def test_a_refused_call_is_rejected_with_the_refusers_error(clock) -> None:
    """The modules that let a call in see why it ended: rejected, with the refuser's error, and
    no evidence about the service."""
    refusal = meshclient.MeshError("no room")

    class Refuse(CallModule):
        role = "refuse"

        def on_call(self, call: Call) -> None:
            raise refusal

    ends = CallEnds()
    stack = meshclient.DEFAULT_STACK.insert_before("fallback", ends).insert_after(
        "deadline", Refuse()
    )
    with client(ok, clock, stack=stack) as http, pytest.raises(meshclient.MeshError) as info:
        http.get("http://users/")
    assert info.value is refusal
    (call,) = ends.calls
    assert (call.rejected, call.error, call.outcome, call.evidence) == (
        True,
        refusal,
        "error",
        False,
    )


def test_a_caller_interrupted_while_queued_ends_the_call_as_cancelled(clock) -> None:
    """``KeyboardInterrupt`` in a module's ``Wait`` (a queue): the caller gets it back, and
    the modules that let the call in end it as cancelled, not as rejected or failed."""

    def wait(timeout: float | None) -> None:
        raise KeyboardInterrupt

    ends = CallEnds()
    stack = meshclient.DEFAULT_STACK.insert_before("fallback", ends).insert_after(
        "bulkhead", Queued(wait)
    )
    with client(ok, clock, stack=stack) as http, pytest.raises(KeyboardInterrupt):
        http.get("http://users/")
    (call,) = ends.calls
    assert (call.outcome, call.rejected, call.error, call.evidence) == (
        "cancelled",
        False,
        None,
        False,
    )


def test_an_attempt_the_caller_walked_away_from_is_cancelled(clock) -> None:
    """``attempt.cancelled`` tells end phases (telemetry, hooks) the caller went away."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    ends, outcomes = CallEnds(), Outcomes()
    with (
        client(handler, clock, stack=watched(ends, outcomes)) as http,
        pytest.raises(KeyboardInterrupt),
    ):
        http.get("http://users/")
    assert outcomes.ended == [(1, True)]
    assert outcomes.seen == []  # no outcome: it says nothing about the endpoint
    assert ends.calls[0].outcome == "cancelled"


def test_no_endpoints_error_says_why_and_what_was_tried(clock) -> None:
    """The registry emptied during the call: the error names the service and its discovery,
    and carries the attempts made, the endpoints tried and the time spent."""
    feeds: list[Any] = []

    class Dwindling(meshclient.Discovery):
        def start(self, updates: Any) -> None:
            feeds.append(updates)
            updates([meshclient.Endpoint("127.0.0.1", port) for port in (8001, 8002)])

        def close(self) -> None:
            pass

        def describe(self) -> str:
            return "test registry"

    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.netloc.decode())
        clock.advance(0.25)
        feeds[0](())  # the registry lists none from now on
        return httpx.Response(503)

    ends = CallEnds()
    services = {"users": meshclient.Service(Dwindling())}
    retry = meshclient.Retry(attempts=3, backoff=0.0, max_backoff=0.0)
    with (
        client(
            handler,
            clock,
            services=services,
            stack=meshclient.DEFAULT_STACK.insert_before("fallback", ends),
            policy=meshclient.Policy(retry=retry),
        ) as http,
        pytest.raises(meshclient.NoEndpointsError) as info,
    ):
        http.get("http://users/x")
    error = info.value
    assert (
        str(error) == "service 'users' has no endpoints: its discovery (test registry) lists none"
    )
    assert (error.attempts, error.endpoints) == (1, tuple(sent))
    assert error.elapsed == pytest.approx(0.25)
    (call,) = ends.calls
    assert (call.error, call.outcome) == (error, "error")


def test_ready_wait_is_what_the_deadline_leaves_and_never_negative(clock) -> None:
    """How long a call waits for a discovery's first set: the deadline's time left, 0 once it
    passed (never a negative or made-up wait), the service's ``ready_timeout`` without one.
    No attempt starts at the deadline itself."""
    waits: list[float] = []
    steps: list[float] = []

    class Queued(CallModule):
        role = "queued"

        def on_call(self, call: Call) -> None:
            waits.append(call.ready_wait())
            for step in steps:
                clock.advance(step)
                waits.append(call.ready_wait())

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    stack = meshclient.DEFAULT_STACK.insert_after("deadline", Queued())
    policy = meshclient.Policy(timeout=2.0)
    with client(handler, clock, stack=stack, policy=policy, ready_timeout=7.0) as http:
        for queued, expected in [([1.5, 0.5], [2.0, 0.5, 0.0]), ([3.0], [2.0, 0.0])]:
            steps[:] = queued
            waits.clear()
            with pytest.raises(meshclient.DeadlineExceeded, match="after 0 attempt"):
                http.get("http://users/")
            assert waits == expected
    assert sent == []
    steps.clear()
    waits.clear()
    with client(ok, clock, stack=stack, policy=meshclient.Policy(timeout=None)) as http:
        http.get("http://users/")
    assert waits == [5.0]  # the default ready_timeout


def test_without_telemetry_modules_a_call_has_no_span_or_context(clock) -> None:
    """``span`` and ``context`` are the telemetry modules' to set: a stack without them leaves
    them ``None`` and works all the same."""
    seen: list[tuple[Any, ...]] = []

    class Reads(AttemptModule):
        role = "reads"

        def on_attempt(self, attempt: Attempt) -> None:
            seen.append((attempt.call.span, attempt.call.context, attempt.span))

    bare = meshclient.DEFAULT_STACK.remove("call_telemetry").remove("attempt_telemetry")
    with client(ok, clock, stack=bare.insert_after("attempt_timeout", Reads())) as http:
        assert http.get("http://users/").status_code == 200
    with client(ok, clock, stack=meshclient.DEFAULT_STACK.remove("call_telemetry")) as http:
        assert http.get("http://users/").status_code == 200
    assert seen == [(None, None, None)]


def test_an_attempts_repr_names_its_number_call_and_endpoint(clock) -> None:
    seen: list[str] = []

    class Reprs(AttemptModule):
        def __init__(self, role: str) -> None:
            self.role = role

        def on_attempt(self, attempt: Attempt) -> None:
            seen.append(repr(attempt))

    stack = meshclient.DEFAULT_STACK.insert_before("balancer", Reprs("before")).insert_after(
        "balancer", Reprs("after")
    )
    with client(ok, clock, stack=stack) as http:
        http.get("http://users/")
    call = "<Call GET users attempts=0 outcome=None>"
    assert seen[0] == f"<Attempt 1 of {call} to None>"
    assert seen[1] in {f"<Attempt 1 of {call} to {address}>" for address in ENDPOINTS}


def test_attempt_header_finds_a_response_header_in_any_case(clock) -> None:
    """``attempt.header(name)``: the first header of that name, whatever its case, decoded as
    latin-1 (HTTP's header charset); ``None`` when there is none."""
    found: list[tuple[str | None, ...]] = []

    class Reads(AttemptModule):
        role = "reads"

        def on_outcome(self, attempt: Attempt) -> None:
            found.append((attempt.header("X-Shard"), attempt.header("x-missing")))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers=[(b"content-type", b"text/plain"), (b"X-SHARD", b"caf\xe9")]
        )

    stack = meshclient.DEFAULT_STACK.insert_after("attempt_timeout", Reads())
    with client(handler, clock, stack=stack) as http:
        http.get("http://users/")
    assert found == [("caf\xe9", None)]


def test_a_request_without_any_header_gets_the_deadline_header(clock) -> None:
    """A hand-built request with no header at all (not even ``Host``) still goes out, with the
    time it has left."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["x-meshclient-timeout-ms"])
        return httpx.Response(200)

    transport = meshclient.MeshTransport(
        {"users": list(ENDPOINTS)},
        policy=meshclient.Policy(timeout=1.0),
        transport=httpx.MockTransport(handler),
        clock=clock,
    )
    request = httpx.Request("GET", "http://users/")
    del request.headers["host"]
    assert request.headers.raw == []
    with transport:
        response = transport.handle_request(request)
        response.close()
    assert response.status_code == 200
    assert sent == ["1000"]


def test_an_endpoint_waits_since_its_oldest_unanswered_attempt(clock) -> None:
    """``EndpointState.waiting_since`` (PeakEwma's floor: an attempt unanswered for t seconds
    says the endpoint takes at least t now): an answered attempt stops counting even while its
    body is still open, and one answered behind an older unanswered attempt leaves that
    attempt's time in place; ``outstanding`` counts them all. Calls made while another waits
    are nested in its bottom here, to stay on one thread."""
    since: list[float | None] = []
    outstanding: list[int] = []

    class Since(AttemptModule):
        role = "since"

        def on_attempt(self, attempt: Attempt) -> None:
            assert attempt.endpoint is not None
            since.append(attempt.endpoint.waiting_since)
            outstanding.append(attempt.endpoint.outstanding)

    http: httpx.Client

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        clock.advance(1.0)
        if path == "/b":  # sent at 101: still unanswered while /c and /d go and come back
            assert http.get("http://users/c").status_code == 200
            clock.advance(1.0)
            assert http.get("http://users/d").status_code == 200
        return httpx.Response(200, stream=httpx.ByteStream(b"body"))  # read when asked for

    services = {"users": meshclient.Service([ENDPOINTS[0]])}
    stack = meshclient.DEFAULT_STACK.insert_after("attempt_timeout", Since())
    with client(handler, clock, stack=stack, services=services) as http:
        streamed = http.send(http.build_request("GET", "http://users/a"), stream=True)
        try:  # /a is answered, its body left unread
            assert http.get("http://users/b").status_code == 200
            assert http.get("http://users/e").status_code == 200
        finally:
            streamed.close()
    #        /a    /b (a answered)  /c (b waits)  /d (c answered behind b)  /e (all answered)
    assert since == [None, None, 101.0, 101.0, None]
    # ``outstanding`` counts every response not closed yet, answered or not
    assert outstanding == [0, 1, 2, 2, 1]


def test_an_attempt_that_fails_unanswered_leaves_the_endpoints_queue(clock) -> None:
    """An attempt that ends without an answer (it failed) is taken off its endpoint's queue
    wherever it stands in it: behind an older unanswered attempt, that attempt's time stays;
    once the older one is answered too, nothing waits."""
    since: list[float | None] = []

    class Since(AttemptModule):
        role = "since"

        def on_attempt(self, attempt: Attempt) -> None:
            assert attempt.endpoint is not None
            since.append(attempt.endpoint.waiting_since)

    http: httpx.Client

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        clock.advance(1.0)
        if path == "/a":  # sent at 100: unanswered while /b fails and /c goes out
            with pytest.raises(httpx.ConnectError):
                http.get("http://users/b")
            clock.advance(1.0)
            assert http.get("http://users/c").status_code == 200
        if path == "/b":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, text="ok")

    services = {"users": meshclient.Service([ENDPOINTS[0]])}
    stack = meshclient.DEFAULT_STACK.insert_after("attempt_timeout", Since())
    policy = meshclient.Policy(retry=meshclient.Retry(attempts=1))
    with client(handler, clock, stack=stack, services=services, policy=policy) as http:
        assert http.get("http://users/a").status_code == 200
        with pytest.raises(httpx.ConnectError):  # alone in the queue, and failed
            http.get("http://users/b")
        assert http.get("http://users/d").status_code == 200
    #        /a    /b (a waits)  /c (b failed behind a)  /b (a answered)  /d (b failed alone)
    assert since == [None, 100.0, 100.0, None, None]


def test_the_engines_own_errors_carry_the_request(clock) -> None:
    """``DeadlineExceeded``, ``NoEndpointsError`` and the engine's ``MeshError`` name the
    caller's request themselves, not only when an ``httpx.Client`` around the transport
    fills it in."""

    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(2.0)
        raise httpx.ReadTimeout("slow", request=request)

    class Empty(meshclient.Discovery):
        def start(self, updates: Any) -> None:
            updates(())

        def close(self) -> None:
            pass

    ends = CallEnds()
    unbalanced = meshclient.Service(
        list(ENDPOINTS),
        stack=meshclient.DEFAULT_STACK.remove("balancer").insert_before("fallback", ends),
    )
    transport = meshclient.MeshTransport(
        {"users": list(ENDPOINTS), "orders": meshclient.Service(Empty()), "stock": unbalanced},
        policy=meshclient.Policy(timeout=1.0),
        transport=httpx.MockTransport(handler),
        clock=clock,
    )
    with transport:
        for url, error in [
            ("http://users/", meshclient.DeadlineExceeded),
            ("http://orders/", meshclient.NoEndpointsError),
            ("http://stock/", meshclient.MeshError),  # no module chose an endpoint
        ]:
            request = httpx.Request("GET", url)
            with pytest.raises(error) as info:
                transport.handle_request(request)
            assert info.value.request is request
    assert str(info.value) == (
        "no module of the stack of service 'stock' chose an endpoint "
        "(is the balancer missing from the stack?)"
    )
    assert (ends.calls[0].error, ends.calls[0].outcome) == (info.value, "error")


def test_a_call_tells_modules_where_it_goes(clock) -> None:
    """``service``, ``passthrough`` and ``port`` (the URL's, or its scheme's default), as
    modules read them (telemetry's ``server.port``, for one)."""
    seen: list[tuple[str, bool, int]] = []

    class Where(CallModule):
        role = "where"

        def on_call(self, call: Call) -> None:
            seen.append((call.service, call.passthrough, call.port))

    stack = meshclient.DEFAULT_STACK.insert_after("deadline", Where())
    with client(ok, clock, stack=stack) as http:
        for url in (
            "http://users/",
            "https://users/",
            "http://example.com:8080/",
            "https://example.com/",
        ):
            http.get(url)
    assert seen == [
        ("users", False, 80),
        ("users", False, 443),
        ("example.com", True, 8080),
        ("example.com", True, 443),
    ]


def test_meshclients_client_reads_the_body_within_the_attempt() -> None:
    """``meshclient.Client.get`` (its caller reads the whole body first): a body cut short is
    a failed attempt, retried like any other, so the caller never sees it."""
    bodies = [Body(broken=True), Body(broken=False)]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=bodies.pop(0))

    retry = meshclient.Retry(attempts=2, backoff=0.0, max_backoff=0.0)
    with meshclient.Client(
        services={"users": list(ENDPOINTS)},
        policy=meshclient.Policy(retry=retry),
        transport=httpx.MockTransport(handler),
    ) as http:
        assert http.get("http://users/").content == b"first part, second part"
    assert bodies == []


class Body(httpx.SyncByteStream):
    """A body in two parts; a ``broken`` one loses its connection after the first."""

    def __init__(self, *, broken: bool) -> None:
        self.broken = broken

    def __iter__(self) -> Iterator[bytes]:
        yield b"first part"
        if self.broken:
            raise httpx.ReadError("connection reset")
        yield b", second part"


class Tracked(httpx.SyncByteStream):
    """A response body that remembers whether it was closed."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"busy"

    def close(self) -> None:
        self.closed = True


def test_an_attempts_fields_tell_modules_what_became_of_it(clock) -> None:
    """Before sending, an attempt is not sent, not finished, no probe, unbounded (no timeout),
    with no retry decision; at its end, ``sent``, the retry module's decision (``None`` for the last
    one), not cancelled, and no response headers for one that got no response. The answer
    of a retried attempt is closed before the next attempt goes out."""
    body = Tracked()
    answers: list[Any] = [httpx.Response(503, stream=body), httpx.ConnectError("refused")]

    def handler(request: httpx.Request) -> httpx.Response:
        if not answers:
            assert body.closed, "the 503 was not closed before the retry"
            return httpx.Response(200)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    started: list[tuple[Any, ...]] = []
    ended: list[tuple[Any, ...]] = []

    class Fields(AttemptModule):
        role = "fields"

        def on_attempt(self, attempt: Attempt) -> None:
            started.append(
                (
                    attempt.sent,
                    attempt.finished,
                    attempt.probe,
                    attempt.bound_by,
                    attempt.decision,
                    attempt.delay,
                )
            )

        def on_attempt_end(self, attempt: Attempt) -> None:
            ended.append(
                (
                    attempt.sent,
                    attempt.finished,
                    attempt.decision,
                    attempt.delay is None,
                    attempt.cancelled,
                    attempt.header("retry-after"),
                )
            )

    stack = meshclient.DEFAULT_STACK.insert_after("attempt_timeout", Fields())
    policy = meshclient.Policy(timeout=None, retry=FAST_RETRY)
    with client(handler, clock, stack=stack, policy=policy) as http:
        assert http.get("http://users/").status_code == 200
    assert started == [(False, False, False, None, None, None)] * 3
    assert ended == [
        (True, True, "retry", False, False, None),
        (True, True, "retry", False, False, None),
        (True, True, None, True, False, None),
    ]


def test_an_attempt_that_never_went_out_ends_cleanly(clock, caplog) -> None:
    """A module below the balancer refused the attempt: it was never sent, and every end
    phase (telemetry's timing included) copes with that without an error logged."""
    sent: list[bool] = []

    class Refuses(AttemptModule):
        role = "refuses"

        def on_attempt(self, attempt: Attempt) -> None:
            raise RuntimeError("cannot sign")

    class Sent(AttemptModule):
        role = "sent"

        def on_attempt_end(self, attempt: Attempt) -> None:
            sent.append(attempt.sent)

    ends = CallEnds()
    stack = (
        meshclient.DEFAULT_STACK.insert_after("balancer", Refuses())
        .insert_after("attempt_telemetry", Sent())
        .insert_before("fallback", ends)
    )
    with client(ok, clock, stack=stack) as http, pytest.raises(RuntimeError, match="sign") as info:
        http.get("http://users/")
    assert sent == [False]
    assert (ends.calls[0].error, ends.calls[0].outcome) == (info.value, "error")
    assert [r.getMessage() for r in caplog.records] == []


# -- defects found by mutation testing -----------------------------------------------------


def test_a_broken_streamed_body_is_raised_as_itself_not_its_own_cause(clock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Body(broken=True))

    with (
        client(handler, clock) as http,
        http.stream("GET", "http://users/") as response,
        pytest.raises(httpx.ReadError) as info,
    ):
        response.read()
    assert info.value.__cause__ is not info.value


def test_an_on_call_that_returns_neither_a_wait_nor_a_response_is_named(clock) -> None:
    log = Log()
    stack = recording_stack(log).insert_after("deadline", RecordCall("odd", log, step=42))
    with client(ok, clock, stack=stack) as http, pytest.raises(TypeError) as info:
        http.get("http://users/")
    assert str(info.value) == "on_call must return None, a Wait or an httpx.Response, got 42"
    assert log[-2:] == ["odd.on_call", "c1.on_call_end:error"]  # refused by the odd module


def test_a_deadline_a_module_set_without_timeout_total_is_named_plainly(clock) -> None:
    class Soon(CallModule):
        role = "soon"

        def on_call(self, call: Call) -> None:
            call.deadline = call.start  # a module's own deadline, already gone

    stack = meshclient.DEFAULT_STACK.insert_after("deadline", Soon())
    with client(ok, clock, stack=stack) as http, pytest.raises(meshclient.DeadlineExceeded) as info:
        http.get("http://users/")
    assert str(info.value).startswith("the call's deadline exceeded after 0 attempt(s)")
