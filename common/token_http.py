"""The token endpoint's HTTP: libcurl (pycurl), one kept-alive handle per thread.

A refresh is one small form POST. Measured single-threaded on this machine's loopback, in the calling thread's
CPU per call: httpx ~340 us, a urllib3 pool ~220 us (its response parsing goes through `http.client` and
`email.parser`), libcurl ~90 us; and libcurl waits for the answer without the GIL. Same contract as the
httpx call it replaced: no retries, no redirects followed, the configured timeout (here for the whole
exchange, the connection at most 5 s of it), HTTP(S)_PROXY and NO_PROXY honoured as httpx did.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import certifi
import pycurl

_HEADERS = ["Content-Type: application/x-www-form-urlencoded", "Accept: application/json"]


class Answer(Protocol):
    """An HTTP answer as the error mapping reads it: an httpx.Response or a FormAnswer."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


@dataclass(frozen=True)
class FormAnswer:
    """What the endpoint answered: status, headers (names in lower case), body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class TransportError(Exception):
    """No answer came: `timed_out` when the timeout ran out, else the connection failed (refused, reset, TLS)."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class FormPoster:
    """POSTs `application/x-www-form-urlencoded` bodies over kept-alive connections; thread-safe.

    Each thread has its own libcurl handle (a handle is not shared between threads), which keeps its
    connections alive between calls. The proxy is decided once per URL, from the environment.
    """

    def __init__(self, timeout_seconds: float) -> None:
        self._timeout_ms = max(1, int(timeout_seconds * 1000))
        self._connect_ms = min(5000, self._timeout_ms)
        self._proxy_by_url: dict[str, str] = {}
        self._local = threading.local()
        self._handles: list[pycurl.Curl] = []
        self._generation = 0
        self._lock = threading.Lock()

    def post(self, url: str, form: Mapping[str, str]) -> FormAnswer:
        """Raises `TransportError` when no answer came."""
        curl = self._handle()
        body = bytearray()
        headers: dict[str, str] = {}

        def header_line(line: bytes) -> None:
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
            elif name.startswith("HTTP/"):
                headers.clear()  # a new response (after a 100 Continue): its own headers only

        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.PROXY, self._proxy(url))
        curl.setopt(pycurl.POSTFIELDS, urlencode(form))
        curl.setopt(pycurl.WRITEFUNCTION, body.extend)
        curl.setopt(pycurl.HEADERFUNCTION, header_line)
        try:
            curl.perform()
        except pycurl.error as exc:
            code, message = exc.args[0], str(exc.args[1]) if len(exc.args) > 1 else ""
            raise TransportError(message, timed_out=code == pycurl.E_OPERATION_TIMEDOUT) from None
        return FormAnswer(int(curl.getinfo(pycurl.RESPONSE_CODE)), headers, bytes(body))

    def close(self) -> None:
        """Closes every thread's handle; a thread posting afterwards opens a new one."""
        with self._lock:
            handles, self._handles = self._handles, []
            self._generation += 1
        for curl in handles:
            try:
                curl.close()
            except pycurl.error:
                pass  # in use by a thread right now: it is dropped when that thread's next call replaces it

    def _handle(self) -> pycurl.Curl:
        local = self._local
        if getattr(local, "generation", -1) == self._generation:
            curl: pycurl.Curl = local.curl
            return curl
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: handles live in many threads
        curl.setopt(pycurl.CAINFO, certifi.where())
        curl.setopt(pycurl.HTTPHEADER, _HEADERS)
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, self._connect_ms)
        curl.setopt(pycurl.TIMEOUT_MS, self._timeout_ms)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        with self._lock:
            self._handles.append(curl)
            local.curl, local.generation = curl, self._generation
        return curl

    def _proxy(self, url: str) -> str:
        """The proxy for `url` as httpx decided it (HTTP(S)_PROXY unless NO_PROXY names the host); "" for none."""
        proxy = self._proxy_by_url.get(url)
        if proxy is None:
            parts = urlsplit(url)
            found = urllib.request.getproxies().get(parts.scheme, "")
            proxy = "" if not found or urllib.request.proxy_bypass(parts.hostname or "") else found
            self._proxy_by_url[url] = proxy
        return proxy
