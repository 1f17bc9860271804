"""Unary gRPC calls through the edge with grpcio (gRPC C-core), an independent client.

usage: grpc_call.py HOST:PORT CA_FILE AUTHORITY PATH [PATH ...]   (CA_FILE "-": plaintext)

Each PATH (e.g. /grpc.health.v1.Health/Check) is called once with an empty message and a
5 s deadline; prints one JSON line: [{"path", "code", "details"}] with the status name as
grpcio reports it (OK, UNAUTHENTICATED, ...).
"""
import json
import sys

import grpc


def main() -> None:
    target, ca_file, authority, *paths = sys.argv[1:]
    options = [("grpc.ssl_target_name_override", authority), ("grpc.default_authority", authority)]
    if ca_file == "-":  # plaintext h2c, to compare with a backend directly
        channel = grpc.insecure_channel(target)
    else:
        with open(ca_file, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(target, credentials, options=options)
    results = []
    with channel:
        for path in paths:
            call = channel.unary_unary(
                path, request_serializer=lambda m: m, response_deserializer=lambda m: m
            )
            try:
                call(b"", timeout=5)
                results.append({"path": path, "code": "OK", "details": ""})
            except grpc.RpcError as err:
                results.append(
                    {"path": path, "code": err.code().name, "details": err.details() or ""}
                )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
