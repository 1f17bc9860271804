"""Holds ONE HTTP/3 connection (aioquic) and sends a GET on it every INTERVAL seconds for
DURATION seconds, never reconnecting.

usage: h3_hold.py HOST PORT CA_FILE SERVER_NAME PATH DURATION INTERVAL

Prints "connected" on its own line once the handshake is done, then, at the end, one JSON
object: {"ok": N, "failed": ["..."], "terminated": null | "reason", "ports": [...],
"ok_after_rebind": N}. A request fails when it gets no complete answer within 3 s or the
status is not 200; "terminated" says why the connection ended, if it did (then every later
request fails).

H3_REBIND_AT (environment, seconds): at that time the client moves the connection to a new
UDP socket (a new local port), as a NAT rebinding does; with H3_REBIND_NEW_CID=1 it also
switches to a new connection ID (an active migration, RFC 9000 section 9). "ports" lists
the local ports used.
"""
import asyncio
import json
import os
import socket
import ssl
import sys
import time

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiting = {}
        self.status = {}
        self.terminated = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = f"error {event.error_code}: {event.reason_phrase}"
            for done in self.waiting.values():
                if not done.done():
                    done.set_exception(RuntimeError(f"connection terminated: {self.terminated}"))
        if isinstance(event, StreamReset) and event.stream_id in self.waiting:
            self.waiting[event.stream_id].set_exception(RuntimeError("stream reset"))
        for h3_event in self.h3.handle_event(event):
            stream_id = getattr(h3_event, "stream_id", None)
            if isinstance(h3_event, HeadersReceived) and stream_id not in self.status:
                self.status[stream_id] = dict(h3_event.headers).get(b":status", b"0").decode()
            if isinstance(h3_event, (HeadersReceived, DataReceived)) and h3_event.stream_ended:
                done = self.waiting.get(stream_id)
                if done is not None and not done.done():
                    done.set_result(self.status.get(stream_id, "0"))

    async def get(self, authority: str, path: str) -> str:
        stream_id = self._quic.get_next_available_stream_id()
        done = asyncio.get_running_loop().create_future()
        self.waiting[stream_id] = done
        self.h3.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b"user-agent", b"aioquic-hold"),
            ],
            end_stream=True,
        )
        self.transmit()
        try:
            return await asyncio.wait_for(done, timeout=3)
        finally:
            del self.waiting[stream_id]

    def local_port(self) -> int:
        return self._transport.get_extra_info("sockname")[1]

    async def rebind(self, new_cid: bool) -> None:
        """Sends from a new socket from now on (the old one is closed)."""
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0, 0, 0))
        old = self._transport
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, sock=sock)
        old.close()
        if new_cid:
            self.change_connection_id()


async def main() -> None:
    host, port, ca_file, server_name, path, duration, interval = sys.argv[1:]
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    config.load_verify_locations(ca_file)
    config.verify_mode = ssl.CERT_REQUIRED
    # Longer than the test: the connection must stay up on its own merit.
    config.idle_timeout = 30.0
    ok, failed, ok_after_rebind = 0, [], 0
    rebind_at = os.environ.get("H3_REBIND_AT")
    new_cid = os.environ.get("H3_REBIND_NEW_CID") == "1"
    async with connect(host, int(port), configuration=config, create_protocol=Client) as client:
        print("connected", flush=True)
        ports = [client.local_port()]
        start = time.monotonic()
        end = start + float(duration)
        while time.monotonic() < end:
            started = time.monotonic()
            if rebind_at is not None and len(ports) == 1 and started - start >= float(rebind_at):
                await client.rebind(new_cid)
                ports.append(client.local_port())
            try:
                status = await client.get(server_name, path)
                if status == "200":
                    ok += 1
                    ok_after_rebind += len(ports) > 1
                else:
                    failed.append(f"status {status}")
            except Exception as err:  # noqa: BLE001 - every failure is reported
                failed.append(f"{time.strftime('%H:%M:%S')} {type(err).__name__}: {err}")
            await asyncio.sleep(max(0.0, float(interval) - (time.monotonic() - started)))
        report = {
            "ok": ok,
            "failed": failed,
            "terminated": client.terminated,
            "ports": ports,
            "ok_after_rebind": ok_after_rebind,
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as err:  # noqa: BLE001 - one clear line for the Rust test
        print(f"h3_hold.py: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
