"""The token endpoint's HTTP: one urllib3 keep-alive pool per process, shared by every thread.

A refresh is one small form POST; through httpx it cost ~340 us of CPU on this machine's loopback, through a
urllib3 pool ~160-200 us (no request/response models, no per-call header merging). Same contract as the
httpx call it replaces: no retries, no redirects followed, the configured timeouts.
"""

from __future__ import annotations

import functools
import json
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import certifi
import urllib3


class Answer(Protocol):
    """An HTTP answer as the error mapping reads it: an httpx.Response or a FormAnswer."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


@dataclass(frozen=True)
class FormAnswer:
    """What the endpoint answered: status, headers (case-insensitive), body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


class FormPoster:
    """POSTs `application/x-www-form-urlencoded` bodies over kept-alive connections; thread-safe.

    Honours HTTP(S)_PROXY and NO_PROXY from the environment, as httpx did (decided once per URL).
    """

    def __init__(self, timeout_seconds: float, *, max_connections: int = 100) -> None:
        self._options: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": max_connections,
            "block": False,  # past maxsize a connection more is opened (and not kept), never a wait
            "retries": False,
            "timeout": urllib3.Timeout(connect=min(5.0, timeout_seconds), read=timeout_seconds),
            "ca_certs": certifi.where(),
        }
        self._direct = urllib3.PoolManager(**self._options)
        self._proxies: dict[str, urllib3.ProxyManager] = {}
        self._by_url: dict[str, Callable[..., urllib3.BaseHTTPResponse]] = {}
        self._lock = threading.Lock()

    def post(self, url: str, form: Mapping[str, str]) -> FormAnswer:
        """Raises urllib3's `TimeoutError` (connect or read) or `HTTPError` (anything else on the wire)."""
        resp = self._sender(url)(body=urlencode(form).encode())
        return FormAnswer(resp.status, resp.headers, resp.data)

    def close(self) -> None:
        with self._lock:
            managers = [self._direct, *self._proxies.values()]
            self._by_url.clear()
        for manager in managers:
            manager.clear()

    def _sender(self, url: str) -> Callable[..., urllib3.BaseHTTPResponse]:
        """How a body is POSTed to `url`, decided once per URL: straight to the host's connection pool (no URL
        parsing or pool lookup per call), or through the proxy's manager."""
        sender = self._by_url.get(url)
        if sender is not None:
            return sender
        parts = urlsplit(url)
        proxy = urllib.request.getproxies().get(parts.scheme)
        with self._lock:
            if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
                manager = self._proxies.setdefault(proxy, urllib3.ProxyManager(proxy, **self._options))
                sender = functools.partial(manager.urlopen, "POST", url, headers=_HEADERS, redirect=False)
            else:
                pool = self._direct.connection_from_url(url)
                target = urllib3.util.parse_url(url).request_uri
                sender = functools.partial(
                    pool.urlopen, "POST", target, headers=_HEADERS, redirect=False, assert_same_host=False
                )
            return self._by_url.setdefault(url, sender)
