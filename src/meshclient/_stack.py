"""The request path as a stack of named modules: the API every module is written against.

A ``Stack`` is an immutable list of modules, outermost first. **Call modules** run once per
logical call (the request your code made), **attempt modules** once per physical attempt (each
try on one endpoint); every call module sits above every attempt module. A module is a
template: when a client first sends to a service it *builds* the module for that service
(``Module.build``), so state such as breaker windows or latency estimates lives per service,
the way Finagle materialises a stack per destination.

A built module takes part in a call through phase methods; the engine calls only the ones a
module overrides, so a module pays for nothing it does not do:

==================  ==============================  =============================================
phase               order                           may
==================  ==============================  =============================================
``on_call``         outermost first                 return a ``Wait`` (queue), an
                                                    ``httpx.Response`` (answer without sending), or
                                                    raise to reject the call (never retried)
``on_attempt``      outermost first                 choose the endpoint, edit ``attempt.headers``,
                                                    set ``attempt.deadline``; raise to fail the call
``on_outcome``      innermost first                 observe ``attempt.status`` or ``attempt.error``;
                                                    runs again, with ``attempt.error``, if a
                                                    streamed body fails after delivery
``retry``           innermost first, first answer   return seconds to wait before another attempt
``on_attempt_end``  innermost first, exactly once   release what ``on_attempt`` took
``on_call_end``     innermost first, exactly once   release what ``on_call`` took (``call.outcome``)
``recover``         outermost first                 turn a failed call's error into a response
==================  ==============================  =============================================

Phases are plain synchronous methods that decide and return; the engine does every wait and
every byte of I/O, for the sync and the async client alike. That is how one module serves both.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, final, runtime_checkable

import anyio
import httpx

if TYPE_CHECKING:
    from ._call import Attempt, Call
    from ._endpoint import EndpointState
    from ._service import Service
    from ._telemetry import RouteTelemetry

__all__ = [
    "ATTEMPT",
    "CALL",
    "Admission",
    "AdmissionModule",
    "AttemptModule",
    "CallModule",
    "Module",
    "ServiceContext",
    "Sleep",
    "Stack",
    "Wait",
]

#: ``Module.scope`` of modules that run once per logical call.
CALL = "call"
#: ``Module.scope`` of modules that run once per physical attempt.
ATTEMPT = "attempt"


@runtime_checkable
class Wait(Protocol):
    """Returned by ``on_call`` to make the call wait before it goes on (a queue, a pacing).

    The engine calls ``wait`` in a sync client and ``wait_async`` in an async one, with the
    seconds the call's deadline leaves (``None``: no deadline). Returning means "go on"; raising
    fails the call with that error. A wait interrupted by cancellation must give back whatever it
    was about to hand over.
    """

    def wait(self, timeout: float | None) -> None: ...

    async def wait_async(self, timeout: float | None) -> None: ...


@final
class Sleep:
    """A ``Wait`` of a fixed number of seconds; ``on_cancel`` runs if the sleeper is cancelled.

    ``on_cancel`` lets a module take back a reservation (a rate limiter's permit) when the call
    that held it goes away before using it.
    """

    __slots__ = ("on_cancel", "seconds")

    def __init__(self, seconds: float, on_cancel: Callable[[], object] | None = None) -> None:
        self.seconds = seconds
        self.on_cancel = on_cancel

    def wait(self, timeout: float | None) -> None:
        try:
            time.sleep(self.seconds)
        except BaseException:
            if self.on_cancel is not None:
                self.on_cancel()
            raise

    async def wait_async(self, timeout: float | None) -> None:
        try:
            await anyio.sleep(self.seconds)
        except BaseException:
            if self.on_cancel is not None:
                self.on_cancel()
            raise

    def __repr__(self) -> str:
        return f"Sleep({self.seconds!r})"


class ServiceContext(Protocol):
    """What a module learns about the service it is built for (``Module.build``).

    One context exists per service per client (and per pass-through host). Its endpoint sets
    are immutable tuples, replaced by assignment, so reading them needs no lock.
    """

    #: The service name (or the host of a pass-through request).
    name: str
    #: The service's configuration (its balancer, budget, admission objects, policy).
    service: Service
    #: ``True`` for a host that is not a configured service: requests keep their own URL.
    passthrough: bool
    #: Clock seconds (``time.monotonic`` unless a test injects one).
    clock: Callable[[], float]
    rng: random.Random
    #: Where built-in modules report spans, metrics and hook events.
    telemetry: RouteTelemetry
    #: The lower-case header announcing the time left to the callee, or ``None``.
    deadline_header: bytes | None

    @property
    def endpoints(self) -> tuple[EndpointState, ...]:
        """Every endpoint discovery currently lists."""

    @property
    def available(self) -> tuple[EndpointState, ...]:
        """The endpoints an attempt may go to (all of them unless a module narrowed the set)."""

    @property
    def version(self) -> int:
        """Changes whenever ``available`` does: rebuild what you derived from it."""

    def set_available(self, endpoints: tuple[EndpointState, ...]) -> None:
        """Narrow (or widen) the set attempts may go to, e.g. leaving out ejected endpoints."""

    def on_endpoints(self, listener: Callable[[tuple[EndpointState, ...]], None]) -> None:
        """Call ``listener`` with every new discovery set, now and on each change."""


class Module:
    """A named layer of the request path. Subclass ``CallModule`` or ``AttemptModule``.

    ``role`` names the position in a ``Stack`` (``stack.replace("retry", ...)``). A module
    instance in a stack is a template shared by every service the stack serves: ``build``
    returns what one service uses (``self`` when the module keeps no per-service state, a new
    object when it does, ``None`` to leave the layer out for that service).
    """

    #: The name of this module's position in a stack; unique within a stack.
    role: str = ""
    scope: ClassVar[str]

    def build(self, service: ServiceContext) -> Module | None:
        """The module as one service uses it; runs once per service per client."""
        return self

    def close(self) -> None:
        """The client (or an evicted pass-through host) stops using what ``build`` returned."""

    def describe(self) -> Mapping[str, Any] | None:
        """Entries for the service in ``client.snapshot()`` (``None``: nothing to add)."""
        return None

    def describe_endpoint(self, endpoint: EndpointState) -> Mapping[str, Any] | None:
        """Entries for one endpoint of the service in ``client.snapshot()``."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} role={self.role!r}>"


class CallModule(Module):
    """Runs once per logical call: admission, deadlines, retries, the call's telemetry."""

    scope: ClassVar[str] = CALL

    def on_call(self, call: Call) -> Wait | httpx.Response | None:
        """The call begins; return ``None`` to go on, a ``Wait`` to wait first, or a response
        to answer the call without sending anything. Raise to reject the call."""
        return None

    def retry(self, call: Call, attempt: Attempt) -> float | None:
        """``attempt`` has its outcome: seconds to wait before another attempt, or ``None``."""
        return None

    def on_call_end(self, call: Call) -> None:
        """The call is over (``call.outcome``); called once for every module ``on_call`` let in."""

    def recover(self, call: Call, error: Exception) -> httpx.Response | Awaitable[Any] | None:
        """The call failed with ``error``: a response to return instead, or ``None``."""
        return None


class AttemptModule(Module):
    """Runs once per physical attempt: endpoint choice, endpoint health, per-attempt headers."""

    scope: ClassVar[str] = ATTEMPT

    def on_attempt(self, attempt: Attempt) -> None:
        """Before the attempt is sent; the modules above have run already."""

    def on_outcome(self, attempt: Attempt) -> None:
        """The attempt has a response head (``attempt.status``) or an error (``attempt.error``).

        A streamed body that fails after its head was delivered changes the attempt's outcome:
        this runs a second time, with ``attempt.error`` set next to ``attempt.status``.
        """

    def on_attempt_end(self, attempt: Attempt) -> None:
        """The attempt is over: its response was closed or discarded, it failed, or its caller
        went away (``attempt.cancelled``); called once for every module ``on_attempt`` ran."""


@runtime_checkable
class Admission(Protocol):
    """A rule that decides whether a call may start: breaker, bulkhead, throttle, rate limit.

    ``admit`` lets the call in (``None``), makes it wait (a ``Wait``), or raises an error (a
    ``meshclient.MeshError`` subclass) that fails the call without a retry. ``release`` is
    called exactly once for every call ``admit`` let in, when that call ends; ``call.outcome``
    and ``call.evidence`` say how it went.
    """

    def admit(self, call: Call) -> Wait | None:
        """Let ``call`` in (``None``), make it wait (``Wait``), or raise a ``MeshError``."""
        ...

    def release(self, call: Call) -> None:
        """``call``, let in by ``admit``, ended: give back what it held (once per call)."""
        ...


def _is_admission(value: object) -> bool:
    return callable(getattr(value, "admit", None)) and callable(getattr(value, "release", None))


class AdmissionModule(CallModule):
    """Puts an ``Admission`` rule into a stack under ``role``.

    ``admission`` is either one object, shared by every service the stack serves, or a function
    of the ``ServiceContext`` returning one object per service (``None``: no rule for that
    service)::

        stack.insert_after("bulkhead", AdmissionModule("office_hours", OfficeHours()))
        stack.insert_after("bulkhead", AdmissionModule("quota", lambda svc: Quota(svc.name)))
    """

    def __init__(
        self,
        role: str,
        admission: Admission | Callable[[ServiceContext], Admission | None],
    ) -> None:
        if not isinstance(role, str) or not role:
            raise TypeError(f"AdmissionModule.role must be a non-empty string, got {role!r}")
        if not _is_admission(admission) and not callable(admission):
            raise TypeError(
                "AdmissionModule.admission must be an Admission (with admit and release) or "
                f"a function of the service returning one, got {admission!r}"
            )
        self.role = role
        self.admission = admission

    def build(self, service: ServiceContext) -> CallModule | None:
        rule: Any = self.admission
        if not _is_admission(rule):
            rule = rule(service)
            if rule is None:
                return None
            if not _is_admission(rule):
                raise TypeError(
                    f"AdmissionModule {self.role!r}: the factory returned {rule!r} for "
                    f"service {service.name!r}, which has no admit and release methods"
                )
        return _Admitted(self.role, rule)

    def __repr__(self) -> str:
        return f"AdmissionModule({self.role!r}, {self.admission!r})"


class _Admitted(CallModule):
    """One admission rule built for one service: its methods are the phases themselves."""

    def __init__(self, role: str, admission: Admission) -> None:
        self.role = role
        self.admission = admission
        # Bound methods of the rule, so a phase costs one call, not two.
        self.on_call = admission.admit  # type: ignore[method-assign]
        self.on_call_end = admission.release  # type: ignore[method-assign]

    def describe(self) -> Mapping[str, Any] | None:
        snapshot = getattr(self.admission, "snapshot", None)
        return None if snapshot is None else {self.role: snapshot()}


@final
class Stack:
    """An immutable, ordered list of modules, outermost first; edits return a new stack.

    ``meshclient.DEFAULT_STACK`` is the stack every client uses unless given another::

        stack = meshclient.DEFAULT_STACK.insert_after("balancer", SignRequests(key))
        client = meshclient.Client(services=..., stack=stack)

    Roles are unique, and call modules come before attempt modules (an attempt is part of a
    call); both are checked when a stack is made, naming the offending module.
    """

    __slots__ = ("_modules",)

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        if isinstance(modules, Module):
            raise TypeError(f"Stack takes an iterable of modules, got one module {modules!r}")
        items = tuple(modules)
        seen: set[str] = set()
        attempt_seen: Module | None = None
        for module in items:
            if not isinstance(module, CallModule | AttemptModule):
                raise TypeError(
                    f"Stack modules must be CallModule or AttemptModule instances, got {module!r}"
                )
            role = module.role
            if not isinstance(role, str) or not role:
                raise ValueError(f"Stack module {module!r} has no role (a non-empty string)")
            if role in seen:
                raise ValueError(f"Stack has two modules with role {role!r}")
            seen.add(role)
            if isinstance(module, AttemptModule):
                attempt_seen = attempt_seen or module
            elif attempt_seen is not None:
                raise ValueError(
                    f"Stack: call module {role!r} must come before every attempt module, "
                    f"but it follows attempt module {attempt_seen.role!r}"
                )
        self._modules = items

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(module.role for module in self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, role: object) -> bool:
        return any(module.role == role for module in self._modules)

    def __getitem__(self, role: str) -> Module:
        return self._modules[self._index(role)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stack) and other._modules == self._modules

    def __hash__(self) -> int:
        return hash(self._modules)

    def __repr__(self) -> str:
        return "Stack([" + ", ".join(f"{m.role!r} ({m.scope})" for m in self._modules) + "])"

    def _index(self, role: str) -> int:
        for i, module in enumerate(self._modules):
            if module.role == role:
                return i
        raise ValueError(f"Stack has no module with role {role!r}; its roles are {self.roles}")

    def insert_before(self, role: str, module: Module) -> Stack:
        """A new stack with ``module`` just above (outside) the module named ``role``."""
        i = self._index(role)
        return Stack((*self._modules[:i], module, *self._modules[i:]))

    def insert_after(self, role: str, module: Module) -> Stack:
        """A new stack with ``module`` just below (inside) the module named ``role``."""
        i = self._index(role) + 1
        return Stack((*self._modules[:i], module, *self._modules[i:]))

    def replace(self, role: str, module: Module) -> Stack:
        """A new stack with ``module`` in place of the module named ``role``."""
        i = self._index(role)
        return Stack((*self._modules[:i], module, *self._modules[i + 1 :]))

    def remove(self, role: str) -> Stack:
        """A new stack without the module named ``role``."""
        i = self._index(role)
        return Stack((*self._modules[:i], *self._modules[i + 1 :]))
