"""uvicorn's httptools protocol, handing a connection to h11 when its request's method is not one httptools knows.

httptools (llhttp) parses at a fraction of h11's cost, but it refuses a method outside its own list with a
400 of its own, before the app: such a request would be neither logged nor counted (as method `OTHER`).
h11 takes any token as a method and passes it on. So this protocol keeps the bytes of the request being
read, from the start of its line to the end of its head, and when httptools refuses its method, hands the
connection over to uvicorn's h11 protocol with those bytes, as uvicorn itself hands a connection over to
its WebSocket protocol. The rest of that connection is served by h11.

One case stays httptools' 400: a request with an unknown method that follows another in the same read
(pipelined), or while an earlier response is still being sent; its start cannot be found in the bytes.

It also sends what one turn of the event loop writes to a connection in one write: uvicorn writes a
response's head and its body separately, two system calls and two TCP segments on loopback per answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


class HttpToolsOrH11(HttpToolsProtocol):
    """See the module's docstring."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._between = True  # no request begun since the last one ended: the next read starts a request
        self._head: list[bytes] | None = None  # the bytes of the request being read, while its head is

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.transport = CoalescingTransport(self.transport, self.loop)  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._between:
            self._head = [data]
        elif self._head is not None:
            self._head.append(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            if not self._hand_over():
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        self._between = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._between = True
        super().on_message_complete()

    def _hand_over(self) -> bool:
        """Give the connection to h11 with the refused request's bytes; False when they are not known."""
        busy = self.pipeline or (self.cycle is not None and not self.cycle.response_complete)
        if self._head is None or busy:
            return False
        head, self._head = b"".join(self._head), None
        protocol = H11Protocol(self.config, self.server_state, self.app_state, self.loop)
        self.connections.discard(self)
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport = transport.flushed()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(head)
        return True


class CoalescingTransport:
    """A connection's transport whose writes in one turn of the event loop go out as one write at its end."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def close(self) -> None:
        self.flushed().close()

    def flushed(self) -> asyncio.Transport:
        """The transport itself, once what was written is sent."""
        self._flush()
        return self._transport

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
