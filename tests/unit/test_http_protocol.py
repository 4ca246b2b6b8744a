"""The API's HTTP protocol sends a response written in pieces in one turn of the event loop as one write."""

from __future__ import annotations

import asyncio

from services.api.http_protocol import CoalescingTransport


class Recording(asyncio.Transport):
    """A transport that keeps what is written to it and whether it was closed (after which writes are lost)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 8000) if name == "sockname" else default


def test_the_writes_of_one_turn_go_out_as_one_write_after_it() -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        real = Recording()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        during = list(real.writes)
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)
        return during, real.writes

    during, after = asyncio.run(run())
    assert during == []
    assert after == [b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}", b"next"]


def test_closing_sends_what_was_written_first_and_the_rest_is_the_transport_itself() -> None:
    async def run() -> Recording:
        real = Recording()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
        transport.close()
        assert transport.get_extra_info("sockname") == ("127.0.0.1", 8000)
        await asyncio.sleep(0)
        return real

    real = asyncio.run(run())
    assert real.writes == [b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n"] and real.closed
