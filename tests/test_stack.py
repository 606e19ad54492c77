"""A stack is an immutable value edited by role; bad stacks fail when they are made."""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any

import anyio
import httpx
import pytest

import meshclient
from meshclient.stack import AdmissionModule, AttemptModule, CallModule, Sleep, Stack

DEFAULT_ROLES = (
    "fallback",
    "call_telemetry",
    "deadline",
    "throttle",
    "breaker",
    "bulkhead",
    "rate_limit",
    "retry",
    "attempt_telemetry",
    "balancer",
    "health",
    "attempt_timeout",
)


class Noop(CallModule):
    def __init__(self, role: str) -> None:
        self.role = role


class NoopAttempt(AttemptModule):
    def __init__(self, role: str) -> None:
        self.role = role


class Rule:
    def admit(self, call: object) -> None:
        return None

    def release(self, call: object) -> None:
        return None


def test_the_default_order_is_the_documented_one() -> None:
    assert meshclient.DEFAULT_STACK.roles == DEFAULT_ROLES


def test_edits_return_new_stacks_and_leave_the_original_alone() -> None:
    base = meshclient.DEFAULT_STACK
    signing = NoopAttempt("signing")
    after = base.insert_after("balancer", signing)
    before = base.insert_before("balancer", NoopAttempt("early"))
    assert after.roles.index("signing") == after.roles.index("balancer") + 1
    assert before.roles.index("early") == before.roles.index("balancer") - 1
    assert base.roles == DEFAULT_ROLES
    assert after["signing"] is signing
    assert "signing" in after
    assert "signing" not in base


def test_replace_and_remove_by_role() -> None:
    mine = AdmissionModule("bulkhead", Rule())
    replaced = meshclient.DEFAULT_STACK.replace("bulkhead", mine)
    assert replaced["bulkhead"] is mine
    assert replaced.roles == DEFAULT_ROLES
    removed = meshclient.DEFAULT_STACK.remove("health")
    assert "health" not in removed
    assert len(removed) == len(DEFAULT_ROLES) - 1


def test_stacks_compare_by_their_modules() -> None:
    one = Noop("one")
    assert Stack([one]) == Stack([one])
    assert hash(Stack([one])) == hash(Stack([one]))
    assert Stack([one]) != Stack([Noop("one")])


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Stack([Noop("a"), Noop("a")]), ValueError, "two modules with role 'a'"),
        (lambda: Stack([Noop("")]), ValueError, "has no role"),
        (lambda: Stack([object()]), TypeError, "CallModule or AttemptModule instances"),
        (lambda: Stack(Noop("a")), TypeError, "iterable of modules, got one module"),
        (
            lambda: Stack([NoopAttempt("pick"), Noop("late")]),
            ValueError,
            "call module 'late' must come before every attempt module",
        ),
        (
            lambda: meshclient.DEFAULT_STACK.remove("nope"),
            ValueError,
            "no module with role 'nope'",
        ),
        (
            lambda: meshclient.DEFAULT_STACK.insert_after("balancer", Noop("late")),
            ValueError,
            "call module 'late' must come before",
        ),
        (lambda: AdmissionModule("", Rule()), TypeError, "role must be a non-empty string"),
        (lambda: AdmissionModule("x", 42), TypeError, "an Admission .* got 42"),
    ],
)
def test_bad_stacks_fail_when_made(build, error, message) -> None:
    with pytest.raises(error, match=message):
        build()


def test_a_factory_that_returns_no_rule_is_reported_when_the_stack_is_built() -> None:
    stack = meshclient.DEFAULT_STACK.insert_after("bulkhead", AdmissionModule("odd", lambda s: 1))
    with pytest.raises(TypeError, match=r"factory returned 1 for service 'users'"):
        meshclient.Client(services={"users": ["127.0.0.1:9"]}, stack=stack)


def test_a_build_of_the_wrong_scope_is_refused() -> None:
    class Confused(CallModule):
        role = "confused"

        def build(self, service: object) -> AttemptModule:
            return NoopAttempt("confused")

    stack = meshclient.DEFAULT_STACK.insert_after("retry", Confused())
    with pytest.raises(TypeError, match="must return a call module or None"):
        meshclient.Client(services={"users": ["127.0.0.1:9"]}, stack=stack)


def test_service_admission_rules_take_any_object_with_admit_and_release() -> None:
    meshclient.Service(["127.0.0.1:9"], breaker=Rule(), bulkhead=Rule(), throttle=Rule())
    with pytest.raises(TypeError, match=r"Service.rate_limit must be an admission rule .* 5"):
        meshclient.Service(["127.0.0.1:9"], rate_limit=5)  # type: ignore[arg-type]


class Cancelled:
    """An ``on_cancel`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_a_sleep_sleeps_its_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    Sleep(0.25).wait(timeout=None)
    assert slept == [0.25]


def test_an_interrupted_sleep_gives_back_then_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupted)
    cancelled = Cancelled()
    with pytest.raises(KeyboardInterrupt):
        Sleep(1.0, on_cancel=cancelled).wait(timeout=None)
    assert cancelled.calls == 1
    with pytest.raises(KeyboardInterrupt):
        Sleep(1.0).wait(timeout=None)  # nothing to give back


def test_an_async_sleep_sleeps_its_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", sleep)
    asyncio.run(Sleep(0.25).wait_async(timeout=None))
    assert slept == [0.25]


@pytest.mark.parametrize("give_back", [True, False])
def test_a_cancelled_async_sleep_gives_back_then_raises(give_back: bool) -> None:
    cancelled = Cancelled()
    sleep = Sleep(3600.0, on_cancel=cancelled if give_back else None)

    async def main() -> None:
        task = asyncio.ensure_future(sleep.wait_async(timeout=None))
        await asyncio.sleep(0)  # the task is asleep now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cancelled.calls == (1 if give_back else 0)


def test_a_stack_prints_its_roles_and_scopes() -> None:
    stack = Stack([Noop("retry"), NoopAttempt("balancer")])
    assert repr(stack) == "Stack(['retry' (call), 'balancer' (attempt)])"


def test_a_module_prints_its_class_and_role() -> None:
    assert repr(Noop("mine")) == "<Noop role='mine'>"


def test_an_admission_module_of_a_non_rule_says_what_it_needs() -> None:
    with pytest.raises(TypeError) as info:
        AdmissionModule("x", 42)  # type: ignore[arg-type]
    assert str(info.value) == (
        "AdmissionModule.admission must be an Admission (with admit and release) or "
        "a function of the service returning one, got 42"
    )


class Counted:
    """An admission rule with a snapshot of what it admitted and released."""

    def __init__(self) -> None:
        self.admitted = 0
        self.released = 0

    def admit(self, call: object) -> None:
        self.admitted += 1

    def release(self, call: object) -> None:
        self.released += 1

    def snapshot(self) -> dict[str, int]:
        return {"admitted": self.admitted, "released": self.released}


def test_admission_rules_run_per_call_and_only_those_with_a_snapshot_show_in_it() -> None:
    """A rule is any object with admit and release, even plain functions set on an instance;
    ``snapshot()`` lists a rule under its role only if the rule has a ``snapshot`` method."""
    counted = Counted()
    calls: list[str] = []
    plain = types.SimpleNamespace(
        admit=lambda call: calls.append("admit"), release=lambda call: calls.append("release")
    )
    stack = (
        meshclient.DEFAULT_STACK.insert_after("bulkhead", AdmissionModule("counted", counted))
        .insert_after("counted", AdmissionModule("plain", plain))
        .insert_after("plain", AdmissionModule("quiet", Rule()))
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with meshclient.Client(
        services={"users": ["127.0.0.1:9"]}, stack=stack, transport=transport
    ) as client:
        for _ in range(2):
            assert client.get("http://users/").status_code == 200
        described = client.snapshot()["services"]["users"]
    assert described["counted"] == {"admitted": 2, "released": 2}
    assert "plain" not in described
    assert "quiet" not in described
    assert calls == ["admit", "release", "admit", "release"]


def test_an_admission_factory_builds_one_rule_per_service_or_leaves_it_out() -> None:
    built: dict[str, Counted] = {}

    def per_service(service: Any) -> Counted | None:
        if service.name == "orders":
            return None
        return built.setdefault(service.name, Counted())

    stack = meshclient.DEFAULT_STACK.insert_after("bulkhead", AdmissionModule("quota", per_service))
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    services = {"users": ["127.0.0.1:9"], "billing": ["127.0.0.1:9"], "orders": ["127.0.0.1:9"]}
    with meshclient.Client(services=services, stack=stack, transport=transport) as client:
        client.get("http://users/")
        client.get("http://users/")
        client.get("http://billing/")
        client.get("http://orders/")
        described = client.snapshot()["services"]
    assert described["users"]["quota"] == {"admitted": 2, "released": 2}
    assert described["billing"]["quota"] == {"admitted": 1, "released": 1}
    assert "quota" not in described["orders"]


class AdmitOnly:
    def admit(self, call: object) -> None:
        return None


class ReleaseOnly:
    def release(self, call: object) -> None:
        return None


@pytest.mark.parametrize("half", [AdmitOnly(), ReleaseOnly()], ids=["admit", "release"])
def test_an_admission_rule_needs_both_admit_and_release(half: object) -> None:
    """Half a rule is refused when the module is made, and when a factory returns one."""
    with pytest.raises(TypeError, match=r"must be an Admission \(with admit and release\)"):
        AdmissionModule("half", half)  # type: ignore[arg-type]
    stack = meshclient.DEFAULT_STACK.insert_after(
        "bulkhead", AdmissionModule("half", lambda service: half)
    )
    with pytest.raises(TypeError, match=r"factory returned .* which has no admit and release"):
        meshclient.Client(services={"users": ["127.0.0.1:9"]}, stack=stack)
