"""https to a logical service: the certificate is checked against the logical name."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trustme

from meshclient.testing import Backend


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def tls_backend(ca: trustme.CA):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("users").configure_cert(context)  # valid for the logical name only
    with Backend("tls", ssl_context=context) as backend:
        yield backend


def test_certificate_is_verified_against_the_logical_name(mesh, ca, tls_backend) -> None:
    verify = client_context(ca)
    client = mesh(services={"users": [tls_backend.address]}, verify=verify)
    response = client.get("https://users/secure")
    assert response.status_code == 200
    assert str(response.url) == "https://users/secure"
    assert tls_backend.requests[0].headers["host"] == "users"


def test_certificate_for_another_name_is_rejected(mesh, ca, tls_backend) -> None:
    client = mesh(services={"payments": [tls_backend.address]}, verify=client_context(ca))
    with pytest.raises(httpx.ConnectError, match=r"certificate|hostname"):
        client.get("https://payments/secure")
    assert tls_backend.count() == 0
