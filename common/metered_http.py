"""An httpx transport that counts every call to Google by API and status code (or `network`).

A transport sees both answers and failures to get one (an event hook sees no connection error), so one
wrapper on the shared client counts every call of the OAuth and Business Profile clients, retries included.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from common.metrics import record_google_request

OTHER = "other"


class MeteredTransport(httpx.BaseTransport):
    """Wraps a transport; `apis` maps a URL prefix (a configured endpoint) to the API name it counts under."""

    def __init__(self, inner: httpx.BaseTransport, apis: Mapping[str, str]) -> None:
        self._inner = inner
        # Longest prefix first: the fake Google serves every API under one host.
        self._apis = sorted(((prefix.rstrip("/"), api) for prefix, api in apis.items() if prefix), reverse=True)

    def api_of(self, url: str) -> str:
        for prefix, api in self._apis:
            if url.startswith(prefix):
                return api
        return OTHER

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        api = self.api_of(str(request.url))
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError:
            record_google_request(api, "network")
            raise
        record_google_request(api, response.status_code)
        return response

    def close(self) -> None:
        self._inner.close()


def metered_client(apis: Mapping[str, str], *, timeout: httpx.Timeout, limits: httpx.Limits) -> httpx.Client:
    """An httpx client whose calls are counted under `apis` (URL prefix → API name)."""
    return httpx.Client(timeout=timeout, transport=MeteredTransport(httpx.HTTPTransport(limits=limits), apis))
