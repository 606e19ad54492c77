"""The attempt modules of the default stack, driven without sockets on virtual time.

The attempt timeout module bounds each attempt by the sooner of ``Timeout.attempt`` and the
call's deadline and tells the callee how long it has; the balancer keeps calls in their zone,
never resends to an endpoint the call tried and learns latency from every attempt; the health
module ejects endpoints on their own failures and probes them back in; and a ``recover`` phase
that returns something other than a response or ``None`` is named in a clear ``TypeError``.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import tenacity
from opentelemetry import context as otel_context
from opentelemetry import propagate

import meshclient
from meshclient.hooks import AttemptFinished, EndpointEjected, EndpointReadmitted
from meshclient.stack import Attempt, AttemptModule, Call, CallModule
from meshclient.testing import FakeClock

A, B, C, D = "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004"
HEADER = "x-meshclient-timeout-ms"
NO_RETRY = meshclient.Policy(retry=None)

Handler = Callable[[httpx.Request], httpx.Response]


def mesh(
    handler: Handler,
    clock: FakeClock,
    endpoints: Any = (A, B),
    *,
    policy: meshclient.Policy = NO_RETRY,
    stack: meshclient.Stack | None = None,
    hooks: list[Any] | None = None,
    **service: Any,
) -> meshclient.MeshTransport:
    """A mesh over ``endpoints`` whose bottom is ``handler``: no sockets, time is ``clock``."""
    telemetry = None if hooks is None else meshclient.Telemetry(hooks=[hooks.append])
    return meshclient.MeshTransport(
        {"users": meshclient.Service(list(endpoints), **service)},
        policy=policy,
        stack=stack,
        transport=httpx.MockTransport(handler),
        telemetry=telemetry,
        clock=clock,
        rng=random.Random(7),
    )


def endpoint(transport: meshclient.MeshTransport, address: str) -> dict[str, Any]:
    """``address``'s entry in the client's snapshot."""
    (entry,) = [
        e for e in transport.snapshot()["services"]["users"]["endpoints"] if e["address"] == address
    ]
    return entry


def call(http: httpx.Client) -> int | type[BaseException]:
    """One GET: its status, or the type of what it raised."""
    try:
        return http.get("http://users/").status_code
    except (httpx.HTTPError, KeyboardInterrupt) as exc:
        return type(exc)


# -- attempt telemetry -----------------------------------------------------------------------


def test_every_attempt_carries_the_callers_trace_context(clock: FakeClock) -> None:
    """Without an OpenTelemetry SDK no span is made, but an incoming trace still goes on,
    to the retry too."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(503 if len(seen) == 1 else 200)

    retry = meshclient.Retry(attempts=2, backoff=0.0, max_backoff=0.0)
    transport = mesh(handler, clock, policy=meshclient.Policy(retry=retry))
    token = otel_context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        with httpx.Client(transport=transport) as http:
            assert http.get("http://users/").status_code == 200
    finally:
        otel_context.detach(token)
    assert seen == [traceparent, traceparent]


# -- the attempt timeout and the deadline header ------------------------------------------------


class SeenAttempts(AttemptModule):
    """Innermost: what each attempt carries once every other module had its say."""

    role = "seen"

    def __init__(self) -> None:
        self.seen: list[tuple[float | None, str | None, str | None]] = []

    def on_attempt(self, attempt: Attempt) -> None:
        deadline = attempt.deadline
        headers = dict(attempt.headers)
        value = headers.get(HEADER.encode())
        self.seen.append(
            (
                None if deadline is None else deadline - attempt.started,
                attempt.bound_by,
                None if value is None else value.decode(),
            )
        )


def seen_stack() -> tuple[meshclient.Stack, SeenAttempts]:
    seen = SeenAttempts()
    return meshclient.DEFAULT_STACK.insert_after("attempt_timeout", seen), seen


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (meshclient.Timeout(total=2.0, attempt=0.5), (0.5, "attempt", "500")),
        (meshclient.Timeout(total=0.5, attempt=2.0), (0.5, "total", "500")),
        (meshclient.Timeout(attempt=2.0), (2.0, "attempt", "2000")),
        (meshclient.Timeout(total=2.0), (2.0, "total", "2000")),
        # A tie goes to the call's deadline: the attempt bound does not shorten anything.
        (meshclient.Timeout(total=2.0, attempt=2.0), (2.0, "total", "2000")),
        (None, (None, None, None)),
    ],
)
def test_an_attempt_is_bounded_by_the_sooner_of_its_own_limit_and_the_calls_deadline(
    timeout: meshclient.Timeout | None, expected: tuple[Any, ...]
) -> None:
    """The deadline, the limit that set it, and the header telling the callee its time left
    (whole milliseconds); the bottom's httpx timeouts are clipped to the same time left."""
    clock = FakeClock(100.0)
    stack, seen = seen_stack()
    clipped: list[float | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        clipped.append(request.extensions["timeout"]["read"])
        return httpx.Response(200)

    policy = meshclient.Policy(timeout=timeout, retry=None)
    with httpx.Client(transport=mesh(handler, clock, policy=policy, stack=stack)) as http:
        assert http.get("http://users/").status_code == 200
    assert seen.seen == [expected]
    left = expected[0]
    assert clipped == [5.0 if left is None else left]  # httpx's default 5 s, or the time left


def test_a_retry_gets_only_the_time_the_call_has_left(clock: FakeClock) -> None:
    """A later attempt's own limit would overrun the call's deadline: the deadline wins, and
    the header tells the callee what is left of it, not the attempt limit."""
    stack, seen = seen_stack()
    answers = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(0.5)
        return httpx.Response(next(answers))

    retry = meshclient.Retry(attempts=2, backoff=0.0, max_backoff=0.0)
    policy = meshclient.Policy(timeout=meshclient.Timeout(total=1.0, attempt=0.75), retry=retry)
    with httpx.Client(transport=mesh(handler, clock, policy=policy, stack=stack)) as http:
        assert http.get("http://users/").status_code == 200
    assert seen.seen == [(0.75, "attempt", "750"), (0.5, "total", "500")]


def test_a_deadline_already_gone_is_announced_as_no_time_left(clock: FakeClock) -> None:
    """The header never promises negative time, even when a module moved the deadline."""

    class Tighten(AttemptModule):
        role = "tighten"

        def on_attempt(self, attempt: Attempt) -> None:
            attempt.call.deadline = attempt.started - 0.5

    stack, seen = seen_stack()
    stack = stack.insert_before("attempt_timeout", Tighten())
    policy = meshclient.Policy(timeout=1.0, retry=None)
    with httpx.Client(
        transport=mesh(lambda r: httpx.Response(200), clock, policy=policy, stack=stack)
    ) as http:
        call(http)
    assert seen.seen == [(-0.5, "total", "0")]


def test_no_header_when_the_client_sends_none(clock: FakeClock) -> None:
    """``deadline_header=None``: the deadline still bounds the attempt, nothing announces it."""
    sent: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers)
        return httpx.Response(200)

    transport = meshclient.MeshTransport(
        {"users": [A]},
        policy=meshclient.Policy(timeout=1.0),
        transport=httpx.MockTransport(handler),
        deadline_header=None,
        clock=clock,
    )
    with httpx.Client(transport=transport) as http:
        http.get("http://users/")
    assert HEADER not in sent[0]


@pytest.mark.parametrize(("ending", "streak"), [(httpx.ReadTimeout, 0), (httpx.ReadError, 1)])
def test_an_inherited_deadline_bounds_the_attempt_and_its_timeout_is_not_the_endpoints_fault(
    ending: type[Exception], streak: int
) -> None:
    """The caller's caller chose a budget: an attempt it cuts off says nothing about the
    endpoint; any other failure within that budget still counts against it."""
    stack, seen = seen_stack()
    with meshclient.deadline_scope(1.0):
        # The inherited deadline is in time.monotonic() seconds: start the fake clock there.
        clock = FakeClock(time.monotonic())

        def handler(request: httpx.Request) -> httpx.Response:
            if ending is httpx.ReadTimeout:
                clock.advance(1.5)  # past the inherited deadline
            raise ending("cut off", request=request)

        policy = meshclient.Policy(timeout=meshclient.Timeout(attempt=5.0), retry=None)
        transport = mesh(handler, clock, (A,), policy=policy, stack=stack)
        with httpx.Client(transport=transport) as http:
            with pytest.raises(meshclient.DeadlineExceeded if streak == 0 else ending):
                http.get("http://users/")
            assert endpoint(transport, A)["health"]["consecutive_failures"] == streak
    ((left, bound_by, header),) = seen.seen
    assert bound_by == "inherited"
    assert left is not None
    assert 0.9 < left <= 1.0
    assert header is not None
    assert 900 <= int(header) <= 1000


def test_health_counts_an_endpoints_own_failures_only(clock: FakeClock) -> None:
    """5xx, network errors and the mesh's own timeouts count against the endpoint; an answer
    below 500 resets the streak; a full local pool or a bad request says nothing about it."""
    script: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ending = script.pop(0)
        if isinstance(ending, int):
            return httpx.Response(ending)
        if ending is httpx.ReadTimeout:
            clock.advance(1.0)  # the attempt's own limit
        raise ending("failed", request=request)

    outlier = meshclient.OutlierDetection(
        consecutive_failures=None, success_rate=None, latency_factor=None
    )
    policy = meshclient.Policy(timeout=meshclient.Timeout(attempt=0.5), retry=None)
    transport = mesh(handler, clock, (A,), policy=policy, outlier=outlier)
    steps = [
        (500, 1),
        (500, 2),
        (499, 0),
        (httpx.ReadError, 1),
        (httpx.PoolTimeout, 1),
        (httpx.LocalProtocolError, 1),
        (httpx.ReadTimeout, 2),
        (200, 0),
    ]
    streaks = []
    with httpx.Client(transport=transport) as http:
        for ending, _ in steps:
            script.append(ending)
            call(http)
            streaks.append(endpoint(transport, A)["health"]["consecutive_failures"])
    assert streaks == [streak for _, streak in steps]


# -- endpoint health: ejection and probing ---------------------------------------------------


def failing(broken: set[str], served: list[str]) -> Handler:
    """A bottom where the endpoints in ``broken`` answer 500 and the others 200; ``served``
    records the endpoint of every attempt, in order."""

    def handler(request: httpx.Request) -> httpx.Response:
        address = request.url.netloc.decode()
        served.append(address)
        return httpx.Response(500 if address in broken else 200)

    return handler


def ejecting(**overrides: Any) -> meshclient.OutlierDetection:
    """Ejection after consecutive failures only, for exactly ``base_ejection`` seconds."""
    settings: dict[str, Any] = {
        "consecutive_failures": 2,
        "success_rate": None,
        "latency_factor": None,
        "base_ejection": 1.0,
        "ejection_jitter": 0.0,
    }
    settings.update(overrides)
    return meshclient.OutlierDetection(**settings)


def test_a_failing_endpoint_is_ejected_probed_and_readmitted(clock: FakeClock) -> None:
    """Ejected after its failures (a hook event naming it, the reason and the time), no
    traffic while out, probed the moment its ejection ends, out twice as long after a failed
    probe, back in after a good one."""
    events: list[Any] = []
    broken = {A}
    served: list[str] = []

    handler = failing(broken, served)

    transport = mesh(
        handler,
        clock,
        hooks=events,
        outlier=ejecting(),
        balancer=meshclient.RoundRobin(rng=random.Random(0)),
    )

    def health() -> list[Any]:
        return [e for e in events if isinstance(e, EndpointEjected | EndpointReadmitted)]

    with httpx.Client(transport=transport) as http:
        for _ in range(10):
            if health():
                break
            call(http)
        assert health() == [EndpointEjected("users", A, "consecutive_failures", 1.0)]
        served.clear()
        for _ in range(4):
            call(http)
        assert served == [B] * 4  # nothing for A while it is out

        clock.advance(1.0)  # exactly when A's ejection ends
        served.clear()
        call(http)  # the probe: A still fails
        assert served == [A]
        assert health()[1:] == [EndpointEjected("users", A, "consecutive_failures", 2.0)]
        for _ in range(3):
            call(http)
        assert served == [A, B, B, B]

        clock.advance(2.0)
        broken.clear()
        served.clear()
        assert call(http) == 200
        assert served == [A]
        assert health()[2:] == [EndpointReadmitted("users", A)]
        for _ in range(4):
            call(http)
        assert set(served) == {A, B}
    finished = [e.endpoint for e in events if isinstance(e, AttemptFinished)]
    assert finished[-5:] == served  # and every attempt is reported


def test_a_probe_without_an_outcome_lets_the_next_call_probe(clock: FakeClock) -> None:
    """A probe its caller abandoned, or one that failed for a reason that is not the
    endpoint's (a full local pool), does not hold the next probe back."""
    events: list[Any] = []
    script: list[Any] = [500, 500]
    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        address = request.url.netloc.decode()
        served.append(address)
        if address == B:
            return httpx.Response(200)
        ending = script.pop(0) if script else 200
        if isinstance(ending, int):
            return httpx.Response(ending)
        if ending is KeyboardInterrupt:
            raise KeyboardInterrupt
        raise ending("no connection", request=request)

    transport = mesh(
        handler,
        clock,
        hooks=events,
        outlier=ejecting(),
        balancer=meshclient.RoundRobin(rng=random.Random(0)),
    )
    with httpx.Client(transport=transport) as http:
        for _ in range(10):
            if any(isinstance(e, EndpointEjected) for e in events):
                break
            call(http)
        clock.advance(1.0)
        script[:] = [KeyboardInterrupt, httpx.PoolTimeout, 200]
        served.clear()
        assert [call(http) for _ in range(3)] == [KeyboardInterrupt, httpx.PoolTimeout, 200]
    assert served == [A, A, A]
    assert EndpointReadmitted("users", A) in events


def test_one_probe_at_a_time_even_when_another_attempt_to_the_endpoint_is_cut_off(
    clock: FakeClock,
) -> None:
    """Only a probe's own ending frees the probe slot: an ordinary attempt to the endpoint
    (here in panic mode, the only endpoint) that its caller abandons leaves the probe in
    flight the only one."""
    in_flight: list[bool] = []
    script: list[Any] = [500]

    def probe_in_flight() -> bool:
        (entry,) = transport.snapshot()["services"]["users"]["health"]["out_of_rotation"]
        return bool(entry["probe_in_flight"])

    def handler(request: httpx.Request) -> httpx.Response:
        ending = script.pop(0) if script else 200
        if ending == "probe":  # the probe: meanwhile another call's attempt is cut off
            script.append(KeyboardInterrupt)
            assert call(http) is KeyboardInterrupt
            in_flight.append(probe_in_flight())
            return httpx.Response(200)
        if ending is KeyboardInterrupt:
            raise KeyboardInterrupt
        return httpx.Response(ending)

    outlier = ejecting(consecutive_failures=1, max_ejected_share=1.0)
    transport = mesh(handler, clock, (A,), outlier=outlier)
    with httpx.Client(transport=transport) as http:
        assert call(http) == 500  # ejected; the only endpoint, so still picked (panic)
        clock.advance(1.0)
        script.append("probe")
        assert call(http) == 200
    assert in_flight == [True]


def test_a_probe_due_to_an_endpoint_this_call_failed_on_waits_for_the_next_call(
    clock: FakeClock,
) -> None:
    """A retry does not probe the endpoint that just failed it; the probe goes with the next
    call instead, at once."""
    events: list[Any] = []
    served: list[str] = []
    fail_next = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.netloc.decode())
        if fail_next[0]:
            fail_next[0] = False
            return httpx.Response(503)
        return httpx.Response(200)

    retry = meshclient.Retry(attempts=2, wait=tenacity.wait_fixed(2.0))
    transport = mesh(
        handler,
        clock,
        hooks=events,
        policy=meshclient.Policy(retry=retry),
        outlier=ejecting(consecutive_failures=1),
    )
    with httpx.Client(transport=transport) as http:
        assert http.get("http://users/").status_code == 200
        first, second = served
        assert first != second  # the ejection ended during the wait, yet no probe to it
        served.clear()
        assert http.get("http://users/").status_code == 200
    assert served == [first]
    assert EndpointReadmitted("users", first) in events


def test_probes_and_ejections_repeat_with_a_seeded_rng() -> None:
    """Ejection times are jittered by the client's ``rng``: the same seed, the same times."""

    def run() -> list[Any]:
        clock = FakeClock(100.0)
        events: list[Any] = []

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(500 if request.url.netloc.decode() == A else 200)

        outlier = ejecting(consecutive_failures=1, ejection_jitter=0.5)
        transport = mesh(handler, clock, (A, B, C, D), hooks=events, outlier=outlier)
        with httpx.Client(transport=transport) as http:
            for _ in range(40):
                clock.advance(0.5)
                call(http)
        return [e for e in events if isinstance(e, EndpointEjected)]

    first = run()
    assert len(first) >= 2
    assert len({e.duration for e in first}) == len(first)  # jittered
    assert run() == first


@pytest.mark.parametrize("zone", [None, "a"])
def test_a_seeded_client_rng_makes_the_balancers_picks_repeatable(zone: str | None) -> None:
    """A balancer given no RNG of its own picks with the client's: one seed, the same picks,
    within a zone too (its own picker)."""
    home = [meshclient.Endpoint("127.0.0.1", 8001 + i, zone="a") for i in range(4)]
    endpoints = home if zone is None else [*home, *ZONE_B]

    def run() -> list[str]:
        picked: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            picked.append(request.url.netloc.decode())
            return httpx.Response(200)

        transport = mesh(handler, FakeClock(100.0), endpoints, zone=zone)
        with httpx.Client(transport=transport) as http:
            for _ in range(30):
                call(http)
        return picked

    first = run()
    assert set(first) == {e.address for e in home}
    assert run() == first


def test_clients_sharing_a_service_each_pick_with_their_own_rng() -> None:
    """One ``Service`` (one balancer) given to two clients: each client's picks follow its
    own seeded RNG, interleaved with the other's calls as they come."""
    service = meshclient.Service([A, B, C, D])

    def transport(picked: list[str], rng: random.Random) -> meshclient.MeshTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            picked.append(request.url.netloc.decode())
            return httpx.Response(200)

        return meshclient.MeshTransport(
            {"users": service},
            policy=NO_RETRY,
            transport=httpx.MockTransport(handler),
            clock=FakeClock(100.0),
            rng=rng,
        )

    alone: list[str] = []
    with httpx.Client(transport=transport(alone, random.Random(7))) as http:
        for _ in range(20):
            call(http)
    first: list[str] = []
    second: list[str] = []
    with (
        httpx.Client(transport=transport(first, random.Random(7))) as one,
        httpx.Client(transport=transport(second, random.Random(7))) as two,
    ):
        for _ in range(20):
            call(one)
            call(two)
    assert first == second == alone


def test_the_success_rate_window_runs_on_the_clients_clock() -> None:
    """Outcomes older than ``success_rate_window`` on the client's clock are forgotten."""
    clock = FakeClock(0.0)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    outlier = meshclient.OutlierDetection(
        consecutive_failures=None, success_rate=0.8, success_rate_window=30.0, latency_factor=None
    )
    transport = mesh(handler, clock, (A,), outlier=outlier)
    with httpx.Client(transport=transport) as http:
        for _ in range(4):
            call(http)
        health = endpoint(transport, A)["health"]
        assert (health["window_calls"], health["window_success_rate"]) == (4, 0.0)
        clock.advance(40.0)
        assert endpoint(transport, A)["health"]["window_calls"] == 0


class Pin(AttemptModule):
    """Sends each attempt to the endpoint the test names: a sticky-routing module."""

    role = "pin"

    def __init__(self) -> None:
        self.to = A
        self.service: Any = None

    def build(self, service: Any) -> AttemptModule:
        self.service = service
        return self

    def on_attempt(self, attempt: Attempt) -> None:
        (attempt.endpoint,) = [e for e in self.service.endpoints if e.address == self.to]


def test_latency_outliers_are_judged_with_the_balancers_decay(clock: FakeClock) -> None:
    """Health compares the same decaying latency estimates the balancer picks by: with a slow
    decay, one endpoint's old slow sample still marks it slow a minute later."""
    events: list[Any] = []
    script: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(script.pop(0)[1])
        return httpx.Response(200)

    pin = Pin()
    stack = meshclient.DEFAULT_STACK.insert_after("balancer", pin)
    outlier = meshclient.OutlierDetection(
        consecutive_failures=None, success_rate=None, latency_min_samples=1
    )
    transport = mesh(
        handler,
        clock,
        (A, B, C),
        stack=stack,
        hooks=events,
        outlier=outlier,
        balancer=meshclient.PeakEwma(decay=1000.0),
    )
    with httpx.Client(transport=transport) as http:
        steps = [(A, 1.0, 60.0), (B, 0.01, 1.0), (C, 0.01, 1.0), (A, 1.0, 0.5), (A, 1.0, 0.0)]
        for to, took, wait in steps:
            pin.to = to
            script.append((to, took))
            assert http.get("http://users/").status_code == 200
            clock.advance(wait)
    # Health sees an outcome before the balancer learns from it: A is marked slow at its second
    # call (its minute-old 1 s sample still ~0.94 s against 0.01 s) and ejected at its third;
    # with a 10 s decay that old sample would have fallen to ~2 ms, and A marked only then.
    assert [e for e in events if isinstance(e, EndpointEjected)] == [
        EndpointEjected("users", A, "latency", pytest.approx(5.0, rel=0.2))
    ]


# -- the balancer ----------------------------------------------------------------------------


def test_the_balancer_learns_latency_and_a_failure_never_makes_an_endpoint_look_faster(
    clock: FakeClock,
) -> None:
    """An answer's latency is learnt; a failure, or an attempt its caller gave up on, counts
    as at least the current estimate; a failure that is not the endpoint's (a bad request, a
    body that broke after its head was timed) teaches nothing."""
    script: list[tuple[float, Any]] = []

    class Breaks(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"part"
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        took, ending = script.pop(0)
        clock.advance(took)
        if isinstance(ending, int):
            return httpx.Response(ending)
        if ending == "body":
            return httpx.Response(200, stream=Breaks())
        if ending is KeyboardInterrupt:
            raise KeyboardInterrupt
        raise ending("failed", request=request)

    balancer = meshclient.PeakEwma()
    transport = mesh(handler, clock, (A,), outlier=None, balancer=balancer)
    assert transport.snapshot()["services"]["users"]["balancer"] == repr(balancer)
    decay = balancer.decay

    def step(took: float, ending: Any) -> tuple[float, int]:
        script.append((took, ending))
        call(http)
        entry = endpoint(transport, A)
        return entry["latency_estimate"], entry["latency_samples"]

    with httpx.Client(transport=transport) as http:
        assert step(1.0, 200) == (1.0, 1)
        peak = 1.0
        for took, ending in [
            (0.25, 500),
            (0.25, httpx.ReadError),
            (0.25, KeyboardInterrupt),  # cut off: took at least this long
        ]:
            peak *= math.exp(-took / decay)  # the estimate decays as time passes, no lower
            estimate, samples = step(took, ending)
            assert estimate == pytest.approx(peak, rel=1e-12), ending
        assert samples == 4
        # Nothing learnt from a request that fails the same anywhere.
        estimate, samples = step(0.25, httpx.LocalProtocolError)
        assert samples == 4
        # The head was timed; the body breaking later adds no second sample.
        peak *= math.exp(-0.5 / decay)
        estimate, samples = step(0.125, "body")
        assert samples == 5
        assert 0.125 < estimate < peak * math.exp(-0.125 / decay)
        # A slow failure raises the estimate to its own latency at once.
        estimate, samples = step(3.0, 503)
        assert (estimate, samples) == (3.0, 6)
        # A fast answer pulls it down, gradually.
        estimate, samples = step(0.125, 200)
        assert samples == 7
        assert 0.125 < estimate < 3.0 * math.exp(-0.125 / decay)


def test_a_retry_never_goes_back_to_an_endpoint_the_call_tried(clock: FakeClock) -> None:
    attempts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.netloc.decode())
        return httpx.Response(503)

    retry = meshclient.Retry(attempts=3, backoff=0.0, max_backoff=0.0)
    transport = mesh(handler, clock, (A, B, C), policy=meshclient.Policy(retry=retry), outlier=None)
    with httpx.Client(transport=transport) as http:
        for _ in range(6):
            attempts.clear()
            assert http.get("http://users/").status_code == 503
            assert sorted(attempts) == [A, B, C]


def test_round_robin_keeps_its_order_while_the_endpoint_set_is_unchanged(clock: FakeClock) -> None:
    """The picker is built once per endpoint set, not per attempt: k rounds give every
    endpoint exactly k calls, in the same order each round."""
    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.netloc.decode())
        return httpx.Response(200)

    balancer = meshclient.RoundRobin(rng=random.Random(3))
    transport = mesh(handler, clock, (A, B, C), outlier=None, balancer=balancer)
    with httpx.Client(transport=transport) as http:
        for _ in range(9):
            http.get("http://users/")
    assert sorted(served[:3]) == [A, B, C]
    assert served == served[:3] * 3


ZONE_B = [
    meshclient.Endpoint("127.0.0.1", 9001, zone="b"),
    meshclient.Endpoint("127.0.0.1", 9002, zone="b"),
]


@pytest.mark.parametrize(
    ("zone_size", "ejected", "stays_home"),
    [
        (4, 2, True),  # exactly half of the zone is still available: enough
        (3, 1, True),
        (3, 2, False),  # a third is too few: spill over to every available endpoint
    ],
)
def test_calls_stay_in_their_zone_while_at_least_half_of_it_is_available(
    clock: FakeClock, zone_size: int, ejected: int, stays_home: bool
) -> None:
    home = [meshclient.Endpoint("127.0.0.1", 8001 + i, zone="a") for i in range(zone_size)]
    home_addresses = {e.address for e in home}
    broken = {e.address for e in home[:ejected]}
    served: list[str] = []
    events: list[Any] = []

    handler = failing(broken, served)

    transport = mesh(
        handler,
        clock,
        [*home, *ZONE_B],
        hooks=events,
        zone="a",
        outlier=ejecting(consecutive_failures=1, max_ejected_share=1.0),
        balancer=meshclient.RoundRobin(rng=random.Random(0)),
    )
    with httpx.Client(transport=transport) as http:
        for _ in range(20):
            call(http)
            if len([e for e in events if isinstance(e, EndpointEjected)]) == ejected:
                break
        assert set(served) <= home_addresses  # home while the failing ones were ejected
        served.clear()
        for _ in range(20):
            call(http)
    left = home_addresses - broken
    if stays_home:
        assert set(served) == left
    else:
        assert set(served) == left | {e.address for e in ZONE_B}


def test_a_zone_with_no_endpoints_of_its_own_uses_all_of_them(clock: FakeClock) -> None:
    served: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        served.add(request.url.netloc.decode())
        return httpx.Response(200)

    transport = mesh(handler, clock, ZONE_B, zone="c")
    with httpx.Client(transport=transport) as http:
        for _ in range(20):
            assert http.get("http://users/").status_code == 200
    assert served == {e.address for e in ZONE_B}


def test_retries_stay_in_the_zone_until_every_endpoint_there_failed_the_call(
    clock: FakeClock,
) -> None:
    home = [
        meshclient.Endpoint("127.0.0.1", 8001, zone="a"),
        meshclient.Endpoint("127.0.0.1", 8002, zone="a"),
    ]
    home_addresses = {e.address for e in home}
    attempts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        address = request.url.netloc.decode()
        attempts.append(address)
        return httpx.Response(503 if address in home_addresses else 200)

    retry = meshclient.Retry(attempts=3, backoff=0.0, max_backoff=0.0)
    transport = mesh(
        handler,
        clock,
        [*home, *ZONE_B],
        zone="a",
        outlier=None,
        policy=meshclient.Policy(retry=retry),
    )
    with httpx.Client(transport=transport) as http:
        for _ in range(6):
            attempts.clear()
            assert http.get("http://users/").status_code == 200
            assert set(attempts[:2]) == home_addresses
            assert len(attempts) == 3
            assert attempts[2] not in home_addresses


# -- what a recover phase returns ----------------------------------------------------------------


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def recover_error(clock: FakeClock, **options: Any) -> TypeError:
    """What a sync client raises when a recover phase answers a refused call wrongly; it is
    always chained to the call's own error."""
    with (
        httpx.Client(transport=mesh(refused, clock, **options)) as http,
        pytest.raises(TypeError) as info,
    ):
        http.get("http://users/")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    return info.value


def test_a_coroutine_fallback_in_a_sync_client_is_a_clear_type_error(clock: FakeClock) -> None:
    """Named, chained to the call's error, and the coroutine is closed, never left pending."""
    made: list[Any] = []

    async def answer() -> httpx.Response:
        return httpx.Response(200)

    def fallback(request: httpx.Request, error: Exception) -> Any:
        made.append(answer())
        return made[-1]

    policy = meshclient.Policy(retry=None, fallback=fallback)
    error = recover_error(clock, policy=policy)
    assert str(error) == (
        f"Policy.fallback {fallback!r} returned an awaitable: a coroutine function fallback "
        "needs meshclient.AsyncClient"
    )
    assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED


class Stale(CallModule):
    role = "stale"

    def __init__(self, result: Any) -> None:
        self.result = result

    def recover(self, call: Call, error: Exception) -> Any:
        return self.result

    def __repr__(self) -> str:
        return f"Stale({self.result!r})"


def test_a_recover_phase_that_returns_neither_a_response_nor_none_is_named(
    clock: FakeClock,
) -> None:
    def fallback(request: httpx.Request, error: Exception) -> Any:
        return "stale"

    policy = meshclient.Policy(retry=None, fallback=fallback)
    error = recover_error(clock, policy=policy)
    assert str(error) == (
        f"Policy.fallback {fallback!r} must return an httpx.Response or None, got 'stale'"
    )

    stack = meshclient.DEFAULT_STACK.insert_before("fallback", Stale(42))
    error = recover_error(clock, stack=stack)
    assert str(error) == "Stale(42).recover must return an httpx.Response or None, got 42"

    # A recover phase set as a plain function on the module is named as it is.
    def stale(call: Call, error: Exception) -> Any:
        return b"stale"

    module = Stale(None)
    module.recover = stale  # type: ignore[method-assign]
    stack = meshclient.DEFAULT_STACK.insert_before("fallback", module)
    with (
        httpx.Client(transport=mesh(refused, clock, stack=stack)) as http,
        pytest.raises(TypeError) as info,
    ):
        http.get("http://users/")
    assert str(info.value) == (
        f"{stale!r}.recover must return an httpx.Response or None, got b'stale'"
    )


def test_an_async_client_awaits_a_coroutine_fallback_and_checks_what_it_returns() -> None:
    async def answer(request: httpx.Request, error: Exception) -> Any:
        return httpx.Response(200, text=f"fallback: {type(error).__name__}")

    async def bad(request: httpx.Request, error: Exception) -> Any:
        return "stale"

    async def main() -> None:
        for fallback in (answer, bad):
            transport = meshclient.AsyncMeshTransport(
                {"users": [A]},
                policy=meshclient.Policy(retry=None, fallback=fallback),
                transport=httpx.MockTransport(refused),
                clock=FakeClock(100.0),
            )
            async with httpx.AsyncClient(transport=transport) as http:
                if fallback is answer:
                    response = await http.get("http://users/")
                    assert response.text == "fallback: ConnectError"
                    continue
                with pytest.raises(TypeError) as info:
                    await http.get("http://users/")
                assert str(info.value) == (
                    f"Policy.fallback {bad!r} must return an httpx.Response or None, got 'stale'"
                )
                assert isinstance(info.value.__cause__, httpx.ConnectError)

    asyncio.run(main())
