"""The endpoint document: one endpoint as a small JSON object (etcd values, file entries).

Schema (version 1)::

    {
      "address": "127.0.0.1",          required: an IP address or a host name
      "port": 8001,                    required: an integer in 1..65535
      "weight": 1,                     optional, default 1: a number > 0 (share of traffic)
      "zone": "a",                     optional, default none: a non-empty string
      "metadata": {"version": "1.2"}   optional, default {}: string keys, string values
    }

Unknown fields are ignored, so a registry can carry more than meshclient reads. Anything else
(not an object, a missing or mistyped field, a port out of range, a weight of 0, a metadata
value that is not a string) makes the whole entry invalid: it is reported through
``DiscoveryUpdates.invalid`` and left out, and the rest of the set is still used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from ._base import Endpoint

__all__ = ["endpoint_document", "endpoint_from_document", "endpoint_from_entry"]

_FIELD = re.compile(r"\bEndpoint\.(\w+)")
_NAMES = {"host": "address"}


def endpoint_from_document(document: object) -> Endpoint:
    """The ``Endpoint`` an endpoint document describes; ``ValueError`` says what is wrong."""
    if not isinstance(document, Mapping):
        raise ValueError(f"an endpoint must be an object, got {_kind(document)}")
    if "address" not in document:
        raise ValueError('an endpoint needs "address" (an IP address or host name)')
    if "port" not in document:
        raise ValueError('an endpoint needs "port" (an integer in 1..65535)')
    address = document["address"]
    if not isinstance(address, str):
        raise ValueError(f'"address" must be a string, got {_kind(address)} {address!r}')
    fields = {
        "host": address,
        "port": document["port"],
        "weight": document.get("weight", 1.0),
        "zone": document.get("zone"),
        "metadata": document.get("metadata", {}),
    }
    try:
        return Endpoint(**fields)
    except (TypeError, ValueError) as exc:
        # "Endpoint.port must be ..." -> '"port" must be ...': the document's own names.
        message = _FIELD.sub(lambda m: f'"{_NAMES.get(m[1], m[1])}"', str(exc))
        raise ValueError(message) from None


def endpoint_from_entry(entry: object) -> Endpoint:
    """A file entry: a ``"host:port"`` string or an endpoint document."""
    if isinstance(entry, str):
        return Endpoint.parse(entry)
    return endpoint_from_document(entry)


def endpoint_document(endpoint: Endpoint) -> bytes:
    """The document for ``endpoint`` (what ``EtcdRegistration`` writes), compact UTF-8 JSON."""
    document: dict[str, object] = {"address": endpoint.host, "port": endpoint.port}
    if endpoint.weight != 1.0:
        document["weight"] = endpoint.weight
    if endpoint.zone is not None:
        document["zone"] = endpoint.zone
    if endpoint.metadata:
        document["metadata"] = dict(endpoint.metadata)
    return json.dumps(document, separators=(",", ":")).encode()


def _kind(value: object) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
    }.get(type(value), type(value).__name__)
