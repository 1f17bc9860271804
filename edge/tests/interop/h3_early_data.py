"""0-RTT (TLS 1.3 early data) through the edge with aioquic.

usage: h3_early_data.py HOST PORT CA_FILE SERVER_NAME METHOD PATH [BODY_BYTES]

1. A first connection GETs `/` (any answer does) and keeps the session ticket the edge sends.
2. A second connection resumes with that ticket and sends METHOD PATH before the handshake
   completes: the request travels in 0-RTT packets. Timing matters, as on a real network:
   - the edge answers every first Initial with a Retry (address validation), and aioquic
     does not resend 0-RTT stream data it sent before a Retry;
   - a 0-RTT packet in a datagram of its own, arriving after the new Initial, was seen to be
     dropped by the edge's QUIC stack now and then (the client then resends it after the
     handshake, where it is no longer early data).
   So the request is queued right after the Retry is read, before the client transmits
   again: the new Initial and the 0-RTT packet leave coalesced in one datagram, which the
   edge reads in one go.
3. When that answer is 425 Too Early, the same request is sent again on the same connection
   after the handshake (RFC 8470 section 5.2: what a client does with 425).

Prints one JSON object:
{"early": {"status", "body"}, "early_data_accepted", "session_resumed",
 "retry": {"status", "body"} (only after a 425), "sent_datagrams": N}

H3_RESUME_AT=PORT:CA_FILE (environment): the second connection goes to this port instead,
with this CA (another edge process resuming the first one's ticket).

H3_MODE=replay (environment): after the second connection closed, every datagram it sent
is sent again, verbatim and in order, from a new UDP socket (an attacker who captured the
flight, keeping its pacing: each datagram waits until as many answers came back as had
before the original was sent, for 2 s in all), and {"replayed_datagrams": N,
"replay_answers": M} is added; M counts the datagrams the edge sent back meanwhile.
"""
import asyncio
import json
import os
import socket
import ssl
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, QuicEvent


class Client(QuicConnectionProtocol):
    """An HTTP/3 client that records the datagrams it sends and the handshake's outcome."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.responses = {}
        self.sent = []
        self.handshake = asyncio.get_running_loop().create_future()
        # Called (to queue the early request) right after the Retry is read.
        self.after_retry = None
        self.received = 0

    def datagram_received(self, data, addr) -> None:
        # QuicConnectionProtocol.datagram_received, with a hook between reading a Retry
        # and transmitting the answer to it.
        self.received += 1
        retries = self._quic._retry_count
        self._quic.receive_datagram(data, addr, now=self._loop.time())
        if self.after_retry is not None and self._quic._retry_count > retries:
            queue, self.after_retry = self.after_retry, None
            queue()
        self._process_events()
        self.transmit()

    def transmit(self) -> None:
        # QuicConnectionProtocol.transmit, keeping a copy of each datagram and how many
        # had been received before it.
        self._transmit_task = None
        for data, addr in self._quic.datagrams_to_send(now=self._loop.time()):
            self.sent.append((data, addr, self.received))
            self._transport.sendto(data, addr)
        timer_at = self._quic.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted) and not self.handshake.done():
            self.handshake.set_result(event)
        for h3_event in self.h3.handle_event(event):
            stream = getattr(h3_event, "stream_id", None)
            if stream not in self.responses:
                continue
            response = self.responses[stream]
            if isinstance(h3_event, HeadersReceived) and "status" not in response:
                fields = {k.decode(): v.decode() for k, v in h3_event.headers}
                response["status"] = int(fields.get(":status", "0"))
            elif isinstance(h3_event, DataReceived):
                response["body"] += h3_event.data
            if getattr(h3_event, "stream_ended", False) and not response["done"].done():
                response["done"].set_result(None)

    def send_request(
        self, method: str, authority: str, path: str, body: bytes, transmit: bool = True
    ) -> int:
        stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"aioquic-0rtt"),
            # A client may not vouch for its own request: the edge must drop this, and
            # an origin that sees "1" knows the edge set it.
            (b"early-data", b"client"),
        ]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        self.responses[stream_id] = {
            "body": bytearray(),
            "done": asyncio.get_running_loop().create_future(),
        }
        self.h3.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=True)
        if transmit:
            self.transmit()
        return stream_id

    async def response(self, stream_id: int) -> dict:
        response = self.responses[stream_id]
        await asyncio.wait_for(response["done"], timeout=10)
        out = {"status": response.get("status", 0)}
        try:
            out["body"] = bytes(response["body"]).decode()
        except UnicodeDecodeError:
            out["body"] = None
        return out


def configuration(ca_file: str, server_name: str) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    config.load_verify_locations(ca_file)
    config.verify_mode = ssl.CERT_REQUIRED
    return config


async def replay(datagrams: list) -> dict:
    """Sends the captured datagrams from a fresh socket; counts what comes back."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0, 0, 0))
    sock.setblocking(False)
    answers = 0

    async def answers_until(deadline: float, wanted: float) -> None:
        nonlocal answers
        while answers < wanted and loop.time() < deadline:
            try:
                await asyncio.wait_for(
                    loop.sock_recv(sock, 65536), timeout=deadline - loop.time()
                )
                answers += 1
            except asyncio.TimeoutError:
                return

    pacing_deadline = loop.time() + 2
    for data, addr, answered_before in datagrams:
        await answers_until(pacing_deadline, answered_before)
        sock.sendto(data, addr)
    sock.close()
    return {"replayed_datagrams": len(datagrams), "replay_answers": answers}


async def main() -> None:
    host, port, ca_file, server_name, method, path, *rest = sys.argv[1:]
    body = b"a" * int(rest[0]) if rest else b""
    port = int(port)

    tickets = []
    config = configuration(ca_file, server_name)
    async with connect(
        host, port, configuration=config, create_protocol=Client,
        session_ticket_handler=tickets.append,
    ) as first:
        await first.response(first.send_request("GET", server_name, "/", b""))
        for _ in range(100):
            if tickets:
                break
            await asyncio.sleep(0.02)
    if not tickets:
        raise RuntimeError("the edge sent no session ticket")

    resume_at = os.environ.get("H3_RESUME_AT", "")
    if resume_at:
        resume_port, ca_file = resume_at.split(":", 1)
        port = int(resume_port)
    config = configuration(ca_file, server_name)
    config.session_ticket = tickets[-1]
    out = {}
    async with connect(
        host, port, configuration=config, create_protocol=Client, wait_connected=False,
    ) as second:
        sent = asyncio.get_running_loop().create_future()
        second.after_retry = lambda: sent.set_result(
            second.send_request(method, server_name, path, body, transmit=False)
        )
        second.transmit()  # the first Initial; the edge answers with a Retry
        early = await asyncio.wait_for(sent, timeout=5)
        out["early"] = await second.response(early)
        handshake = await asyncio.wait_for(second.handshake, timeout=10)
        out["early_data_accepted"] = handshake.early_data_accepted
        out["session_resumed"] = handshake.session_resumed
        if out["early"]["status"] == 425:
            out["retry"] = await second.response(
                second.send_request(method, server_name, path, body)
            )
        sent = list(second.sent)
    out["sent_datagrams"] = len(sent)
    if os.environ.get("H3_MODE") == "replay":
        out.update(await replay(sent))
    print(json.dumps(out))


if __name__ == "__main__":
    if os.environ.get("H3_DEBUG"):
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    try:
        asyncio.run(main())
    except Exception as err:  # noqa: BLE001 - one clear line for the Rust test
        print(f"h3_early_data.py: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
