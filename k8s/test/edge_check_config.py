#!/usr/bin/env python3
"""Rewrites the edge TOML of a render so `edge check --config` can run offline.

    edge_check_config.py IN.toml OUT.toml SANDBOX_DIR

`edge check` loads the certificates and resolves every upstream address, which only exist in the
cluster. The copy differs from the ConfigMap's text in exactly these values, replaced in place
(everything else is checked as rendered):
  - [tls.default] / [[tls.certs]] cert and key  -> SANDBOX/tls/tls.crt, tls.key (a throwaway pair)
  - [plugins.identity] key_dir                  -> SANDBOX/identity (a throwaway <key_id>.key made here)
  - [admin] token_file                          -> SANDBOX/admin-token (a throwaway token)
  - [server] pid_file, upgrade_sock              -> SANDBOX/run/...
  - [clusters.*] addresses host:port             -> 127.0.0.1:port (Service names do not resolve here)
"""
import base64
import os
import re
import sys
import tomllib
from pathlib import Path


def main() -> int:
    src, dst, sandbox = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    text = src.read_text(encoding="utf-8")
    cfg = tomllib.loads(text)
    replacements: dict[str, str] = {}
    tls = cfg.get("tls", {})
    for entry in [tls.get("default")] + list(tls.get("certs", [])):
        if entry:
            replacements[entry["cert"]] = str(sandbox / "tls" / "tls.crt")
            replacements[entry["key"]] = str(sandbox / "tls" / "tls.key")
    identity = cfg.get("plugins", {}).get("identity", {})
    if identity.get("key_dir"):
        replacements[identity["key_dir"]] = str(sandbox / "identity")
        (sandbox / "identity").mkdir(parents=True, exist_ok=True)
        key = sandbox / "identity" / f"{identity.get('key_id', '')}.key"
        key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n", encoding="ascii")
    token = cfg.get("admin", {}).get("token_file")
    if token:
        replacements[token] = str(sandbox / "admin-token")
        (sandbox / "admin-token").write_text("k8s-validate-throwaway-admin-token-0123456789\n")
    server = cfg.get("server", {})
    for key in ("pid_file", "upgrade_sock"):
        if key in server:
            replacements[server[key]] = str(sandbox / "run" / Path(server[key]).name)
    for cluster in cfg.get("clusters", {}).values():
        for address in cluster.get("addresses", []):
            host, _, port = address.rpartition(":")
            replacements[address] = f"127.0.0.1:{port}"
    for old, new in replacements.items():
        text, count = re.subn(rf'"{re.escape(old)}"', f'"{new}"', text)
        if count == 0:
            print(f"edge_check_config.py: {src}: could not find \"{old}\" to rewrite", file=sys.stderr)
            return 1
    dst.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
