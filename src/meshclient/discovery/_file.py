"""``FileDiscovery``: endpoints from a JSON or TOML file, reloaded when the file changes."""

from __future__ import annotations

import json
import os
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._validate import check_positive
from ._base import Endpoint
from ._document import endpoint_from_entry
from ._watch import Run, Watcher

__all__ = ["FileDiscovery", "parse_file"]

_FORMATS = ("json", "toml")
#: A file modified less than this long ago (ns) is re-read even if its stat looks unchanged:
#: file times have the kernel's coarse-clock granularity, so two same-size writes in one tick
#: look identical (git's "racy clean" problem, solved the same way).
_RACY_NS = 2_000_000_000


class FileDiscovery(Watcher):
    """The endpoints listed for ``service`` in a JSON or TOML file, reloaded when it changes.

    For local development and tests. The file maps service names to endpoint lists; an entry
    is a ``"host:port"`` string or an endpoint document (``{"address": ..., "port": ...,
    "weight": ..., "zone": ..., "metadata": {...}}``, see ``docs/discovery.md``)::

        {"users": ["127.0.0.1:8001", {"address": "127.0.0.1", "port": 8002, "weight": 2}]}

    or in TOML ``users = ["127.0.0.1:8001", {address = "127.0.0.1", port = 8002}]``.

    - ``interval`` = 1.0 s: how often the file's inode, size and times are checked; a change
      (an in-place write or an atomic rename over it) is picked up within one interval.
    - ``format``: ``"json"`` or ``"toml"``; by default from the suffix (``.toml`` is TOML,
      ``.json`` is JSON).

    The first read happens in ``start`` (a local file is quick), so a service is ready as soon
    as its client exists. A missing or unparsable file, or one without ``service``, is a
    registry error: the last good set stays. An unusable entry is reported and left out.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        service: str,
        *,
        interval: float = 1.0,
        format: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"FileDiscovery.path must be a str or a path, got {path!r}")
        if not isinstance(service, str) or not service:
            raise ValueError(f"FileDiscovery.service must be a non-empty str, got {service!r}")
        check_positive("FileDiscovery", "interval", interval)
        self.path = Path(path)
        self.service = service
        self.interval = float(interval)
        if format is None:
            suffix = self.path.suffix.lower()
            if suffix not in (".json", ".toml"):
                raise ValueError(
                    f"FileDiscovery.format must be 'json' or 'toml' for a file without a .json "
                    f"or .toml suffix, got format=None for {str(self.path)!r}"
                )
            format = suffix[1:]
        if format not in _FORMATS:
            raise ValueError(f"FileDiscovery.format must be 'json' or 'toml', got {format!r}")
        self.format = format

    def describe(self) -> str:
        return f"file {self.path}#{self.service}"

    def __repr__(self) -> str:
        return (
            f"FileDiscovery({str(self.path)!r}, service={self.service!r}, "
            f"interval={self.interval!r}, format={self.format!r})"
        )

    def _begin(self, run: Run) -> None:
        run.state = _FileState()
        self._poll(run, run.state)

    def _watch(self, run: Run) -> None:
        state: _FileState = run.state
        while run.sleep(self.interval):
            self._poll(run, state)

    def _poll(self, run: Run, state: _FileState) -> None:
        try:
            stat = os.stat(self.path)
            signature = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
            racy = time.time_ns() - stat.st_mtime_ns < _RACY_NS
            if signature == state.signature and not racy:
                return
            data = self.path.read_bytes()
        except OSError as exc:
            state.signature = state.data = None  # re-read whatever appears next
            self._fail(run, state, exc)
            return
        state.signature = signature
        if data == state.data:
            return  # same bytes: already published, or already reported as broken
        state.data = data
        try:
            endpoints, rejected = parse_file(data, self.format, self.service, str(self.path))
        except ValueError as exc:
            self._fail(run, state, exc)
            return
        state.error = None
        for entry, reason in rejected:
            run.invalid(entry, reason)
        run.publish(endpoints)

    @staticmethod
    def _fail(run: Run, state: _FileState, error: Exception) -> None:
        # Reported once per distinct failure, not once per poll: a file that stays missing
        # for an hour is one error, not 3 600 log lines.
        message = f"{type(error).__name__}: {error}"
        if message != state.error:
            state.error = message
            run.error(error)


class _FileState:
    __slots__ = ("data", "error", "signature")

    def __init__(self) -> None:
        self.signature: tuple[int, ...] | None = None
        self.data: bytes | None = None
        self.error: str | None = None


def parse_file(
    data: bytes, format: str, service: str, source: str = "<file>"
) -> tuple[list[Endpoint], list[tuple[object, str]]]:
    """The endpoints of ``service`` in a discovery file, and the entries left out (with why).

    Raises ``ValueError`` when the file as a whole is unusable (not JSON/TOML, not a table of
    services, no such service, not a list).
    """
    try:
        text = data.decode("utf-8")
        document: Any = tomllib.loads(text) if format == "toml" else json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{source} is not valid {format.upper()}: {exc}") from None
    if not isinstance(document, Mapping):
        raise ValueError(
            f"{source} must map service names to endpoint lists, got {type(document).__name__}"
        )
    if service not in document:
        names = ", ".join(sorted(map(str, document))) or "none"
        raise ValueError(f"{source} has no service {service!r} (services: {names})")
    entries = document[service]
    if not isinstance(entries, list):
        raise ValueError(
            f"{source}: {service!r} must be a list of endpoints, got {type(entries).__name__}"
        )
    endpoints: list[Endpoint] = []
    rejected: list[tuple[object, str]] = []
    seen: set[tuple[str, int]] = set()
    for entry in entries:
        try:
            endpoint = endpoint_from_entry(entry)
        except (TypeError, ValueError) as exc:
            rejected.append((entry, str(exc)))
            continue
        key = (endpoint.host, endpoint.port)
        if key in seen:
            rejected.append((entry, f"{endpoint.address} is listed twice for {service!r}"))
            continue
        seen.add(key)
        endpoints.append(endpoint)
    return endpoints, rejected
