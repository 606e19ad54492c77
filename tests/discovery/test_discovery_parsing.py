"""Parsing and the pure decisions of the backends: no servers, no threads."""

from __future__ import annotations

import json
import sys
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest

from meshclient.discovery import DnsDiscovery, EtcdDiscovery, EtcdRegistration, FileDiscovery
from meshclient.discovery._dns import NoAddress, SrvRecord, refresh_delay, srv_endpoints
from meshclient.discovery._document import (
    endpoint_document,
    endpoint_from_document,
    endpoint_from_entry,
)
from meshclient.discovery._etcd import prefix_range_end
from meshclient.discovery._file import parse_file
from meshclient.discovery._watch import Backoff

# -- the endpoint document --------------------------------------------------------------


def test_document_with_every_field() -> None:
    endpoint = endpoint_from_document(
        {
            "address": "127.0.0.1",
            "port": 8001,
            "weight": 2,
            "zone": "b",
            "metadata": {"version": "1.2"},
        }
    )
    assert (endpoint.host, endpoint.port, endpoint.weight, endpoint.zone) == (
        "127.0.0.1",
        8001,
        2,
        "b",
    )
    assert dict(endpoint.metadata) == {"version": "1.2"}


def test_document_defaults_and_unknown_fields_ignored() -> None:
    endpoint = endpoint_from_document({"address": "::1", "port": 1, "id": 7, "extra": [1]})
    assert (endpoint.weight, endpoint.zone, dict(endpoint.metadata)) == (1.0, None, {})
    assert endpoint.address == "[::1]:1"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([], "must be an object"),
        ("127.0.0.1:1", "must be an object"),
        ({"port": 1}, 'needs "address"'),
        ({"address": "127.0.0.1"}, 'needs "port"'),
        ({"address": 127, "port": 1}, '"address" must be a string'),
        ({"address": "no spaces allowed", "port": 1}, '"address" must be'),
        ({"address": "127.0.0.1", "port": 0}, '"port" must be'),
        ({"address": "127.0.0.1", "port": "80"}, '"port" must be'),
        ({"address": "127.0.0.1", "port": True}, '"port" must be'),
        ({"address": "127.0.0.1", "port": 8001.0}, '"port" must be'),
        ({"address": "127.0.0.1", "port": 1, "weight": 0}, '"weight" must be'),
        ({"address": "127.0.0.1", "port": 1, "weight": "2"}, '"weight" must be'),
        ({"address": "127.0.0.1", "port": 1, "zone": ""}, '"zone" must be'),
        ({"address": "127.0.0.1", "port": 1, "metadata": {"v": 2}}, '"metadata" must be'),
        ({"address": "127.0.0.1", "port": 1, "metadata": ["x"]}, '"metadata" must be'),
    ],
)
def test_bad_document_says_why(document: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        endpoint_from_document(document)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
DOCUMENTISH = st.fixed_dictionaries(
    {},
    optional={
        "address": st.sampled_from(["127.0.0.1", "::1", "users-1.svc", "", "a b"]) | JSON,
        "port": st.integers(-5, 70000) | JSON,
        "weight": st.floats() | JSON,
        "zone": st.text(max_size=3) | JSON,
        "metadata": st.dictionaries(st.text(max_size=3), st.text(max_size=3)) | JSON,
    },
)


@hypothesis.given(JSON | DOCUMENTISH)
def test_any_json_is_an_endpoint_or_a_reason(document: Any) -> None:
    """Whatever a registry holds, parsing returns an endpoint or raises ValueError: no crash."""
    try:
        endpoint_from_document(document)
    except ValueError as exc:
        reason = str(exc)
        assert reason, "a rejected entry must say why"


def test_registration_document_round_trips() -> None:
    original = endpoint_from_document(
        {"address": "127.0.0.1", "port": 8001, "weight": 3, "zone": "a", "metadata": {"k": "v"}}
    )
    assert endpoint_from_document(json.loads(endpoint_document(original))) == original
    plain = endpoint_from_entry("127.0.0.1:8002")
    assert json.loads(endpoint_document(plain)) == {"address": "127.0.0.1", "port": 8002}


# -- files ------------------------------------------------------------------------------

FILE_JSON = json.dumps(
    {
        "users": [
            "127.0.0.1:8001",
            {"address": "127.0.0.1", "port": 8002, "weight": 2, "zone": "b"},
            "not an endpoint",
            {"address": "127.0.0.1"},
            "127.0.0.1:8001",
        ],
        "orders": ["127.0.0.1:9001"],
    }
).encode()

FILE_TOML = b"""
orders = ["127.0.0.1:9001"]
users = [
  "127.0.0.1:8001",
  { address = "127.0.0.1", port = 8002, weight = 2, zone = "b" },
  "not an endpoint",
  { address = "127.0.0.1" },
  "127.0.0.1:8001",
]
"""


@pytest.mark.parametrize(("data", "fmt"), [(FILE_JSON, "json"), (FILE_TOML, "toml")])
def test_file_entries_and_rejects(data: bytes, fmt: str) -> None:
    endpoints, rejected = parse_file(data, fmt, "users")
    assert [e.address for e in endpoints] == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert (endpoints[1].weight, endpoints[1].zone) == (2, "b")
    reasons = [reason for _, reason in rejected]
    assert len(reasons) == 3
    assert "host:port" in reasons[0]
    assert 'needs "port"' in reasons[1]
    assert "listed twice" in reasons[2]


def test_toml_array_of_tables() -> None:
    data = (
        b'[[users]]\naddress = "127.0.0.1"\nport = 8001\n\n'
        b'[[users]]\naddress = "::1"\nport = 8002\n'
    )
    endpoints, rejected = parse_file(data, "toml", "users")
    assert [e.address for e in endpoints] == ["127.0.0.1:8001", "[::1]:8002"]
    assert rejected == []


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"{", "json", "not valid JSON"),
        (b"users = [", "toml", "not valid TOML"),
        (b"\xff\xfe", "json", "not valid JSON"),
        (b"[]", "json", "must map service names"),
        (b'{"orders": []}', "json", "no service 'users' \\(services: orders\\)"),
        (b'{"users": "127.0.0.1:8001"}', "json", "must be a list"),
    ],
)
def test_unusable_file_is_an_error(data: bytes, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_file(data, fmt, "users")


def test_empty_list_is_an_empty_set() -> None:
    """A service listed with no endpoints is the file's truth, not a failure."""
    assert parse_file(b'{"users": []}', "json", "users") == ([], [])


# -- DNS: SRV selection and TTLs ----------------------------------------------------------


def lookup(table: dict[str, list[str]]) -> Any:
    def addresses(target: str) -> list[str]:
        if target not in table:
            raise NoAddress(f"NXDOMAIN {target}")
        return table[target]

    return addresses


HOSTS = {"a": ["127.0.0.2"], "b": ["127.0.0.3"], "c": ["127.0.0.4"], "d": ["127.0.0.5"]}


def test_srv_uses_only_the_lowest_priority() -> None:
    records = [
        SrvRecord(20, 5, 8003, "c"),
        SrvRecord(10, 50, 8001, "a"),
        SrvRecord(10, 25, 8002, "b"),
    ]
    endpoints, rejected = srv_endpoints(records, lookup(HOSTS))
    assert [(e.address, e.weight) for e in endpoints] == [
        ("127.0.0.2:8001", 50.0),
        ("127.0.0.3:8002", 25.0),
    ]
    assert rejected == []
    assert dict(endpoints[0].metadata) == {"srv_target": "a"}


def test_srv_falls_back_when_the_lowest_priority_has_no_target() -> None:
    records = [SrvRecord(10, 1, 8001, "gone"), SrvRecord(20, 1, 8003, "c")]
    endpoints, rejected = srv_endpoints(records, lookup(HOSTS))
    assert [e.address for e in endpoints] == ["127.0.0.4:8003"]
    assert [record for record, _ in rejected] == [SrvRecord(10, 1, 8001, "gone")]


def test_srv_all_zero_weights_share_equally() -> None:
    records = [SrvRecord(1, 0, 8001, "a"), SrvRecord(1, 0, 8002, "b")]
    endpoints, _ = srv_endpoints(records, lookup(HOSTS))
    assert [e.weight for e in endpoints] == [1.0, 1.0]


def test_srv_zero_weight_beside_positive_is_a_last_resort() -> None:
    records = [SrvRecord(1, 40, 8001, "a"), SrvRecord(1, 10, 8002, "b"), SrvRecord(1, 0, 8003, "c")]
    endpoints, _ = srv_endpoints(records, lookup(HOSTS))
    weights = {e.port: e.weight for e in endpoints}
    assert weights[8001] == 40.0
    assert weights[8002] == 10.0
    assert 0 < weights[8003] < weights[8002] / 10


def test_srv_weight_is_split_over_a_targets_addresses() -> None:
    table = {"a": ["127.0.0.2", "127.0.0.3"], "b": ["127.0.0.4"]}
    endpoints, _ = srv_endpoints(
        [SrvRecord(1, 10, 80, "a"), SrvRecord(1, 10, 80, "b")], lookup(table)
    )
    assert {e.address: e.weight for e in endpoints} == {
        "127.0.0.2:80": 5.0,
        "127.0.0.3:80": 5.0,
        "127.0.0.4:80": 10.0,
    }


def test_srv_dot_target_and_unresolvable_targets_are_left_out() -> None:
    records = [SrvRecord(1, 1, 80, "."), SrvRecord(1, 1, 81, "gone"), SrvRecord(1, 1, 82, "a")]
    endpoints, rejected = srv_endpoints(records, lookup(HOSTS))
    assert [e.address for e in endpoints] == ["127.0.0.2:82"]
    assert [record.target for record, _ in rejected] == [".", "gone"]


def test_srv_without_any_usable_target() -> None:
    endpoints, rejected = srv_endpoints([SrvRecord(1, 1, 80, "gone")], lookup(HOSTS))
    assert endpoints == []
    assert len(rejected) == 1


@hypothesis.given(
    st.lists(
        st.builds(
            SrvRecord,
            st.integers(0, 3),
            st.integers(0, 65535),
            st.integers(1, 65535),
            st.sampled_from([*HOSTS, "gone", "."]),
        ),
        max_size=12,
    )
)
def test_srv_selection_properties(records: list[SrvRecord]) -> None:
    """Exactly the usable records of the lowest usable priority; positive weights; no
    duplicates; every left-out record is unusable and from that priority or a lower value."""
    endpoints, rejected = srv_endpoints(records, lookup(HOSTS))
    assert len({(e.host, e.port) for e in endpoints}) == len(endpoints)
    assert all(e.weight > 0 for e in endpoints)
    usable = [r for r in records if r.target in HOSTS]
    if not usable:
        assert endpoints == []
        return
    chosen = min(r.priority for r in usable)
    expected = {(HOSTS[r.target][0], r.port) for r in usable if r.priority == chosen}
    assert {(e.host, e.port) for e in endpoints} == expected
    assert all(r.target not in HOSTS and r.priority <= chosen for r, _ in rejected)


@pytest.mark.parametrize(
    ("ttl", "expected"), [(0, 1.0), (0.5, 1.0), (30, 30.0), (60, 60.0), (86400, 60.0)]
)
def test_refresh_follows_the_ttl_within_bounds(ttl: float, expected: float) -> None:
    assert refresh_delay(ttl, 1.0, 60.0) == expected


# -- etcd key ranges, backoff ------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"/services/users/", b"/services/users0"),
        (b"a", b"b"),
        (b"a\xff", b"b"),
        (b"\xff\xff", b"\0"),
    ],
)
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


def test_backoff_grows_to_its_cap_and_resets() -> None:
    class Top:  # the largest draw, to read the ceilings
        def uniform(self, low: float, high: float) -> float:
            return high

    backoff = Backoff(0.1, 0.5, rng=Top())  # type: ignore[arg-type]
    assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next() == 0.1


# -- construction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EtcdDiscovery("127.0.0.1:2379", prefix="/a/"), "EtcdDiscovery.url"),
        (lambda: EtcdDiscovery("http://127.0.0.1:2379", prefix=""), "EtcdDiscovery.prefix"),
        (lambda: EtcdDiscovery("http://h:1", prefix="/a/", timeout=-1), "EtcdDiscovery.timeout"),
        (lambda: EtcdRegistration("http://h:1", "/a/", "127.0.0.1:1", ttl=0), "ttl"),
        (lambda: EtcdRegistration("http://h:1", "/a/", "127.0.0.1:1", key="/b/x"), "key"),
        (lambda: EtcdRegistration("http://h:1", "/a/", "nope"), "host:port"),
        (lambda: FileDiscovery("eps.yaml", "users"), "FileDiscovery.format"),
        (lambda: FileDiscovery("eps.json", ""), "FileDiscovery.service"),
        (lambda: FileDiscovery("eps.json", "users", interval=0), "FileDiscovery.interval"),
    ],
)
def test_bad_configuration_fails_at_construction(build: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        build()


@pytest.mark.usefixtures("dnspython")
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DnsDiscovery("users.svc", port=0), "DnsDiscovery.port"),
        (lambda: DnsDiscovery("users.svc"), "DnsDiscovery.port"),
        (lambda: DnsDiscovery.srv("_http._tcp.users", port=80), "DnsDiscovery.port"),
        (lambda: DnsDiscovery("", port=80), "DnsDiscovery.name"),
        (lambda: DnsDiscovery("u", port=80, min_ttl=0), "DnsDiscovery.min_ttl"),
        (lambda: DnsDiscovery("u", port=80, min_ttl=5, max_ttl=1), "DnsDiscovery.max_ttl"),
        (lambda: DnsDiscovery("u", port=80, record_types=("MX",)), "DnsDiscovery.record_types"),
        (lambda: DnsDiscovery("u", port=80, nameservers=["dns.google"]), "nameservers"),
        (lambda: DnsDiscovery("u", port=80, nameserver_port=70000), "nameserver_port"),
        (lambda: DnsDiscovery("u", port=80, backoff=2, max_backoff=1), "max_backoff"),
    ],
)
def test_bad_dns_configuration_fails_at_construction(build: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        build()


def test_dns_discovery_without_dnspython_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dns.resolver", None)
    with pytest.raises(ImportError, match=r"meshclient\[dns\]"):
        DnsDiscovery("users.svc.test", port=8001)


@pytest.mark.usefixtures("dnspython")
def test_dns_descriptions_name_the_source() -> None:
    assert DnsDiscovery("users.svc", port=8001).describe() == "dns users.svc:8001"
    assert DnsDiscovery.srv("_http._tcp.users.svc").describe() == "dns srv _http._tcp.users.svc"


def test_descriptions_name_the_source() -> None:
    etcd = EtcdDiscovery("http://127.0.0.1:2379/", prefix="/s/users/")
    assert etcd.describe() == "etcd http://127.0.0.1:2379 /s/users/"
    assert FileDiscovery("/tmp/eps.toml", "users").describe() == "file /tmp/eps.toml#users"
