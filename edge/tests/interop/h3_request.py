"""One HTTP/3 request through the edge with aioquic, an independent QUIC + HTTP/3 stack.

usage: h3_request.py HOST PORT CA_FILE SERVER_NAME METHOD PATH [BODY] [NAME:VALUE ...]

BODY is a byte count N (N bytes of b"a"; 0: no body) or hex:HEX (those bytes). Prints one
JSON object:
{"status", "headers": {...}, "trailers": {...}, "body_length", "body"} ("body" only when it is
UTF-8 text of at most 64 KiB). Exits 1 with a message on a connection or stream failure.

H3_MODE (environment) changes what the client does after the headers:
- "stall": send BODY but never end the stream, then wait for the server's answer;
- "reset-after:SECONDS": send the request, wait SECONDS, reset the stream (H3_REQUEST_CANCELLED)
  and print {"reset": true} after giving the reset a moment to leave.
"""
import asyncio
import json
import os
import ssl
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_running_loop().create_future()
        self.headers = None
        self.trailers = {}
        self.body = bytearray()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset) and not self.done.done():
            self.done.set_exception(RuntimeError(f"stream reset, error {event.error_code}"))
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                fields = {k.decode(): v.decode() for k, v in h3_event.headers}
                if self.headers is None:
                    self.headers = fields
                else:
                    self.trailers = fields
            elif isinstance(h3_event, DataReceived):
                self.body.extend(h3_event.data)
            ended = getattr(h3_event, "stream_ended", False)
            if ended and not self.done.done():
                self.done.set_result(None)


async def main() -> None:
    host, port, ca_file, server_name, method, path, *rest = sys.argv[1:]
    spec = rest[0] if rest else "0"
    body = bytes.fromhex(spec[4:]) if spec.startswith("hex:") else b"a" * int(spec)
    extra = [tuple(h.split(":", 1)) for h in rest[1:]]
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    config.load_verify_locations(ca_file)
    config.verify_mode = ssl.CERT_REQUIRED
    async with connect(host, int(port), configuration=config, create_protocol=Client) as client:
        stream_id = client._quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", server_name.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"aioquic"),
        ] + [(k.strip().lower().encode(), v.strip().encode()) for k, v in extra]
        mode = os.environ.get("H3_MODE", "")
        stall = mode == "stall"
        client.h3.send_headers(stream_id, headers, end_stream=not body and not stall)
        if body:
            client.h3.send_data(stream_id, body, end_stream=not stall)
        client.transmit()
        if mode.startswith("reset-after:"):
            await asyncio.sleep(float(mode.split(":", 1)[1]))
            client._quic.reset_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
            client._quic.stop_stream(stream_id, 0x10C)
            client.transmit()
            await asyncio.sleep(0.3)
            print(json.dumps({"reset": True}))
            return
        await asyncio.wait_for(client.done, timeout=10)
        headers = client.headers or {}
        out = {
            "status": int(headers.get(":status", "0")),
            "headers": {k: v for k, v in headers.items() if not k.startswith(":")},
            "trailers": client.trailers,
            "body_length": len(client.body),
        }
        if len(client.body) <= 65536:
            try:
                out["body"] = client.body.decode()
            except UnicodeDecodeError:
                pass
        print(json.dumps(out))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as err:  # noqa: BLE001 - one clear line for the Rust test
        print(f"h3_request.py: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
