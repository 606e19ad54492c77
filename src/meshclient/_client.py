"""``Client`` and ``AsyncClient``: httpx clients whose transport is the mesh."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypedDict, Unpack

import httpx

from ._async._transport import AsyncMeshTransport
from ._call import BUFFERED
from ._compat import (
    AuthTypes,
    CookieTypes,
    HeaderTypes,
    QueryParamTypes,
    RequestContent,
    RequestData,
    RequestExtensions,
    RequestFiles,
    TimeoutTypes,
    UseClientDefault,
)
from ._mesh import ServicesArg
from ._names import DEADLINE_HEADER
from ._policy import POLICY_EXTENSION, Policy
from ._pool import DEFAULT_LIMITS
from ._stack import Stack
from ._sync._transport import MeshTransport
from ._telemetry import Telemetry

__all__ = ["AsyncClient", "Client"]


class _Options(TypedDict, total=False):
    params: QueryParamTypes | None
    headers: HeaderTypes | None
    cookies: CookieTypes | None
    auth: AuthTypes | UseClientDefault | None
    follow_redirects: bool | UseClientDefault
    timeout: TimeoutTypes | UseClientDefault
    extensions: RequestExtensions | None


class _BodyOptions(_Options, total=False):
    content: RequestContent | None
    data: RequestData | None
    files: RequestFiles | None
    json: Any | None


def _extensions(extensions: RequestExtensions | None, policy: Policy | None) -> RequestExtensions:
    if policy is None:
        return extensions or {}
    return {**(extensions or {}), POLICY_EXTENSION: policy}


class Client(httpx.Client):
    """An ``httpx.Client`` that sends requests for logical services through the mesh.

    It takes every httpx keyword, and every request method a per-call ``policy=``. Besides:

    - ``services``: logical name -> endpoint list or ``Service``; a URL whose host is one of
      these names goes through the mesh, any other host goes out as plain httpx sends it.
    - ``policy``: the client-wide ``Policy`` (timeouts, retries, idempotency) under each
      service's and each call's own.
    - ``stack``: the modules every call runs through (default ``meshclient.DEFAULT_STACK``;
      a ``Service`` may carry its own).
    - ``telemetry``: a ``Telemetry`` choosing the OpenTelemetry providers and the hooks
      (default: the global providers, no hooks).
    - ``deadline_header``: the header that tells a mesh service how many milliseconds its
      caller will still wait (``None``: not sent).
    - ``transport`` and ``mounts``: httpx's meaning, beneath the mesh. A request goes to the
      transport its URL selects (the first matching mount, else ``transport``, else
      meshclient's own pools); to a service it goes once per attempt, addressed to the
      endpoint the mesh chose, with ``Host`` the logical name.
    - The connection settings (``limits``, ``verify``, ``cert``, ``http1``/``http2``,
      ``trust_env``, ``proxy``) build meshclient's pools; ``limits`` count per endpoint.
    """

    def __init__(
        self,
        *,
        services: ServicesArg = None,
        policy: Policy | None = None,
        stack: Stack | None = None,
        transport: httpx.BaseTransport | None = None,
        mounts: Mapping[str, httpx.BaseTransport | None] | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxy: Any = None,
        telemetry: Telemetry | None = None,
        deadline_header: str | None = DEADLINE_HEADER,
        **kwargs: Any,
    ) -> None:
        self._mesh_transport = MeshTransport(
            services,
            policy=policy,
            stack=stack,
            transport=transport,
            mounts=mounts,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            proxy=proxy,
            telemetry=telemetry,
            deadline_header=deadline_header,
        )
        super().__init__(trust_env=trust_env, transport=self._mesh_transport, **kwargs)

    def snapshot(self) -> dict[str, Any]:
        """Live state: services → endpoints with load and latency estimate; budgets."""
        return self._mesh_transport.snapshot()

    def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> httpx.Response:
        kwargs["extensions"] = _extensions(kwargs.get("extensions"), policy)
        # The caller reads the whole body: the mesh reads it within the attempt (``buffered``).
        token = BUFFERED.set(True)
        try:
            return super().request(method, url, **kwargs)
        finally:
            BUFFERED.reset(token)

    @contextmanager
    def stream(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> Iterator[httpx.Response]:
        kwargs["extensions"] = _extensions(kwargs.get("extensions"), policy)
        with super().stream(method, url, **kwargs) as response:
            yield response

    def get(
        self, url: httpx.URL | str, *, policy: Policy | None = None, **kwargs: Unpack[_Options]
    ) -> httpx.Response:
        return self.request("GET", url, policy=policy, **kwargs)

    def head(
        self, url: httpx.URL | str, *, policy: Policy | None = None, **kwargs: Unpack[_Options]
    ) -> httpx.Response:
        return self.request("HEAD", url, policy=policy, **kwargs)

    def options(
        self, url: httpx.URL | str, *, policy: Policy | None = None, **kwargs: Unpack[_Options]
    ) -> httpx.Response:
        return self.request("OPTIONS", url, policy=policy, **kwargs)

    def delete(
        self, url: httpx.URL | str, *, policy: Policy | None = None, **kwargs: Unpack[_Options]
    ) -> httpx.Response:
        return self.request("DELETE", url, policy=policy, **kwargs)

    def post(
        self,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> httpx.Response:
        return self.request("POST", url, policy=policy, **kwargs)

    def put(
        self,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> httpx.Response:
        return self.request("PUT", url, policy=policy, **kwargs)

    def patch(
        self,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> httpx.Response:
        return self.request("PATCH", url, policy=policy, **kwargs)


class AsyncClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that sends requests for logical services through the mesh.

    The same keywords as ``Client``.
    """

    def __init__(
        self,
        *,
        services: ServicesArg = None,
        policy: Policy | None = None,
        stack: Stack | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        mounts: Mapping[str, httpx.AsyncBaseTransport | None] | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxy: Any = None,
        telemetry: Telemetry | None = None,
        deadline_header: str | None = DEADLINE_HEADER,
        **kwargs: Any,
    ) -> None:
        self._mesh_transport = AsyncMeshTransport(
            services,
            policy=policy,
            stack=stack,
            transport=transport,
            mounts=mounts,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            proxy=proxy,
            telemetry=telemetry,
            deadline_header=deadline_header,
        )
        super().__init__(trust_env=trust_env, transport=self._mesh_transport, **kwargs)

    def snapshot(self) -> dict[str, Any]:
        """Live state: services → endpoints with load and latency estimate; budgets."""
        return self._mesh_transport.snapshot()

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> httpx.Response:
        kwargs["extensions"] = _extensions(kwargs.get("extensions"), policy)
        # The caller reads the whole body: the mesh reads it within the attempt (``buffered``).
        token = BUFFERED.set(True)
        try:
            return await super().request(method, url, **kwargs)
        finally:
            BUFFERED.reset(token)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> AsyncIterator[httpx.Response]:
        kwargs["extensions"] = _extensions(kwargs.get("extensions"), policy)
        async with super().stream(method, url, **kwargs) as response:
            yield response

    async def get(
        self, url: httpx.URL | str, *, policy: Policy | None = None, **kwargs: Unpack[_Options]
    ) -> httpx.Response:
        return await self.request("GET", url, policy=policy, **kwargs)

    async def head(
        self, url: httpx.URL | str, *, policy: Policy | None = None, **kwargs: Unpack[_Options]
    ) -> httpx.Response:
        return await self.request("HEAD", url, policy=policy, **kwargs)

    async def options(
        self, url: httpx.URL | str, *, policy: Policy | None = None, **kwargs: Unpack[_Options]
    ) -> httpx.Response:
        return await self.request("OPTIONS", url, policy=policy, **kwargs)

    async def delete(
        self, url: httpx.URL | str, *, policy: Policy | None = None, **kwargs: Unpack[_Options]
    ) -> httpx.Response:
        return await self.request("DELETE", url, policy=policy, **kwargs)

    async def post(
        self,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> httpx.Response:
        return await self.request("POST", url, policy=policy, **kwargs)

    async def put(
        self,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> httpx.Response:
        return await self.request("PUT", url, policy=policy, **kwargs)

    async def patch(
        self,
        url: httpx.URL | str,
        *,
        policy: Policy | None = None,
        **kwargs: Unpack[_BodyOptions],
    ) -> httpx.Response:
        return await self.request("PATCH", url, policy=policy, **kwargs)
