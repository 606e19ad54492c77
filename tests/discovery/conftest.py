"""Real registries for the discovery tests: one etcd and one dnsmasq per test session.

Each test gets its own etcd key prefix (``etcd_prefix``) and its own DNS name (``dns_name``),
so tests share the servers without seeing each other. A test may kill a server; the
function-scoped fixtures start it again for the next test. Where etcd, dnsmasq or dnspython
is missing, the tests needing it call ``require_real`` (a skip locally, a failure in CI).
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from discovery_support import DNS_DOMAIN, DnsServer, EtcdServer, Recorder

from meshclient.discovery import Discovery

_names = itertools.count(1)


def binary(name: str) -> str | None:
    """The path of ``name`` on PATH or in the sbin directories (dnsmasq lives in /usr/sbin)."""
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def _dnspython_available() -> bool:
    try:
        import dns.resolver  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def dnspython(require_real: Callable[[str, str], None]) -> None:
    """For tests building a ``DnsDiscovery``: dnspython is the ``dns`` extra."""
    if not _dnspython_available():
        require_real("dnspython", "pip install 'meshclient[dns]'")


@pytest.fixture(scope="session")
def _etcd_session() -> Iterator[EtcdServer | None]:
    etcd = binary("etcd")
    if etcd is None:
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="meshclient-etcd-"))
    server = EtcdServer(workdir, etcd)
    try:
        server.start()
        yield server
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def etcd(
    _etcd_session: EtcdServer | None, require_real: Callable[[str, str], None]
) -> Iterator[EtcdServer]:
    """The session's etcd, running (started again if an earlier test killed it)."""
    if _etcd_session is None:
        require_real("etcd", "no etcd binary (apt-get install etcd-server)")
    assert _etcd_session is not None
    if not _etcd_session.running:
        _etcd_session.start()
    yield _etcd_session
    if not _etcd_session.running:
        _etcd_session.start()


@pytest.fixture
def etcd_prefix(etcd: EtcdServer) -> str:
    """A key prefix no other test uses."""
    return f"/meshclient-tests/{next(_names)}-{secrets.token_hex(3)}/"


@pytest.fixture(scope="session")
def _dns_session() -> Iterator[DnsServer | None]:
    dnsmasq = binary("dnsmasq")
    if dnsmasq is None or not _dnspython_available():
        yield None
        return
    workdir = Path(tempfile.mkdtemp(prefix="meshclient-dnsmasq-"))
    server = DnsServer(workdir, dnsmasq)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def dnsmasq(
    _dns_session: DnsServer | None, require_real: Callable[[str, str], None]
) -> Iterator[DnsServer]:
    """The session's dnsmasq, running (started again if an earlier test killed it)."""
    if _dns_session is None:
        missing = "dnsmasq" if binary("dnsmasq") is None else "dnspython"
        require_real(
            missing, "apt-get install dnsmasq-base; pip install 'meshclient[dns]' (dnspython)"
        )
    assert _dns_session is not None
    if not _dns_session.running:
        _dns_session.start()
    yield _dns_session
    if not _dns_session.running:
        _dns_session.start()


@pytest.fixture
def dns_name() -> str:
    """A name in the test domain no other test uses."""
    return f"t{next(_names)}-{secrets.token_hex(2)}.{DNS_DOMAIN}"


@pytest.fixture
def record() -> Iterator[Callable[[Discovery], Recorder]]:
    """``record(discovery)`` starts it reporting to a new ``Recorder``; closed at teardown."""
    started: list[Discovery] = []

    def start(discovery: Discovery) -> Recorder:
        recorder = Recorder()
        discovery.start(recorder)
        started.append(discovery)
        return recorder

    yield start
    for discovery in started:
        discovery.close()
