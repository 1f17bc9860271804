#!/usr/bin/env python3
"""Offline checks of the rendered Kubernetes manifests (run by scripts/k8s-validate.sh).

    validate.py --repo ROOT --render NAME=FILE [--render ...] [--secrets NAME=FILE ...]
                [--kube-versions 1.29,1.37] [--edge-toml-out DIR]

1. Schema: every object of every render against the Kubernetes OpenAPI schemas of each
   --kube-versions (kubernetes-validate, strict: unknown fields are errors); CRD kinds against the
   structural schemas in k8s/test/crd-schemas/. A kind with no schema is an error.
2. Invariants of our own (see INVARIANTS in docs/deploy.md): services select pods, the edge's
   container ports match its TOML config, TCP+UDP 443, resources and probes, no key material,
   securityContext of the edge, default-deny NetworkPolicy, Secrets referenced exist, Postgres
   sizing, ...
3. Observability: every PromQL expression of the PrometheusRule and of the Grafana dashboards
   parses (promql-parser) and names only metrics (and labels) our Rust code exports, or that
   k8s/test/external-metrics.txt lists.

Each problem is printed as `FILE: [object] problem`; the exit code is 1 when there is any.
"""

from __future__ import annotations

import argparse
import base64
import functools
import ipaddress
import json
import os
import posixpath
import re
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import yaml

PROBLEMS: list[str] = []

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}
# Pod specs that may mount a service account token (they call the API).
API_CLIENT_SERVICE_ACCOUNTS = {"cert-rotation"}
# Prometheus target labels that any metric may carry in a query.
TARGET_LABELS = {"namespace", "pod", "node", "job", "instance", "service", "container", "endpoint", "app", "le"}


def problem(where: str, message: str) -> None:
    PROBLEMS.append(f"{where}: {message}")


def obj_name(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------

def load_render(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return obj["spec"]["template"]["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    kind = obj.get("kind")
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"].get("metadata", {}).get("labels", {}) or {}
    return obj["spec"]["template"].get("metadata", {}).get("labels", {}) or {}


def pod_annotations(obj: dict) -> dict:
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"].get("metadata", {}).get("annotations", {}) or {}
    return obj["spec"]["template"].get("metadata", {}).get("annotations", {}) or {}


def all_containers(spec: dict) -> list[tuple[str, dict]]:
    return [("initContainer", c) for c in spec.get("initContainers", []) or []] + \
           [("container", c) for c in spec.get("containers", []) or []]


def selector_matches(selector: dict, labels: dict) -> bool:
    """matchLabels / matchExpressions semantics (a plain dict is a Service selector)."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def parse_quantity(q) -> float:
    """Kubernetes quantity to a number (bytes for memory, cores for cpu)."""
    s = str(q)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}
    for suffix, mult in units.items():
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mult
    return float(s)


def parse_pg_size(value: str) -> float:
    m = re.fullmatch(r"(\d+)\s*(kB|MB|GB|TB)?", value.strip())
    if not m:
        raise ValueError(value)
    mult = {"kB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40, None: 8192}[m.group(2)]
    return int(m.group(1)) * mult


def parse_conf(text: str, sep: str = "=") -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if sep == "=":
            if "=" not in line:
                continue
            k, v = line.split("=", 1)
        else:
            parts = line.split(None, 1)
            if len(parts) != 2:
                continue
            k, v = parts
        out[k.strip()] = v.strip().strip("'")
    return out


# --------------------------------------------------------------------------------------------
# 1. schemas
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _crd_schema(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def schema_check(label: str, objs: list[dict], repo: Path, versions: list[str]) -> None:
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    # kubernetes-validate re-reads and re-parses the (large) schema files for every object;
    # cache them, which turns minutes into seconds.
    kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)
    crd_dir = repo / "k8s" / "test" / "crd-schemas"
    for obj in objs:
        api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        where = f"{label}: {obj_name(obj)}"
        crd = crd_dir / f"{api.replace('/', '_')}_{kind}.json"
        if crd.exists():
            validator = jsonschema.Draft202012Validator(_crd_schema(str(crd)))
            for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
                path = ".".join(str(p) for p in err.path)
                problem(where, f"does not match {crd.relative_to(repo)} at '{path}': {err.message}")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problem(where, f"no schema for {api} {kind} in Kubernetes {version} nor in "
                               f"k8s/test/crd-schemas/ (add a structural schema for a CRD)")
                break
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                problem(where, f"invalid against Kubernetes {version} (strict) at '{path}': {err.message}")


# --------------------------------------------------------------------------------------------
# 2. invariants
# --------------------------------------------------------------------------------------------

class Render:
    def __init__(self, label: str, objs: list[dict]):
        self.label = label
        self.objs = objs
        self.by_kind: dict[str, list[dict]] = {}
        for o in objs:
            self.by_kind.setdefault(o["kind"], []).append(o)

    def get(self, kind: str, name: str) -> dict | None:
        for o in self.by_kind.get(kind, []):
            if o["metadata"]["name"] == name:
                return o
        return None

    def workloads(self):
        for o in self.objs:
            if o["kind"] in WORKLOAD_KINDS:
                yield o

    def where(self, obj: dict, extra: str = "") -> str:
        return f"{self.label}: {obj_name(obj)}{(' ' + extra) if extra else ''}"


def check_services(r: Render) -> None:
    for svc in r.by_kind.get("Service", []):
        selector = svc["spec"].get("selector")
        if not selector:
            problem(r.where(svc), "has no selector")
            continue
        pods = [w for w in r.workloads() if w["kind"] != "CronJob" and selector_matches(selector, pod_labels(w))]
        pods = [w for w in pods if w["kind"] != "Job"] or pods
        if not pods:
            problem(r.where(svc), f"selector {selector} matches no pod template in the render")
            continue
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            for w in pods:
                cports = [p for _, c in all_containers(pod_spec(w)) for p in c.get("ports", []) or []]
                proto = port.get("protocol", "TCP")
                ok = any((p.get("name") == target if isinstance(target, str) else p["containerPort"] == target)
                         and p.get("protocol", "TCP") == proto for p in cports)
                if not ok:
                    problem(r.where(svc), f"port {port.get('name')} targets {target}/{proto}, "
                                          f"which no container of {obj_name(w)} declares")


def resolve_port(port, containers_ports: list[dict]) -> int | None:
    if isinstance(port, int):
        return port
    for p in containers_ports:
        if p.get("name") == port:
            return p["containerPort"]
    return None


def mount_for(path: str, container: dict) -> dict | None:
    """The volumeMount that holds `path` (the longest mountPath prefix)."""
    best = None
    for m in container.get("volumeMounts", []) or []:
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    return best


def volume(spec: dict, name: str) -> dict | None:
    for v in spec.get("volumes", []) or []:
        if v["name"] == name:
            return v
    return None


def check_edge(r: Render, edge_toml_out: Path | None) -> None:
    ds = r.get("DaemonSet", "edge")
    if ds is None:
        problem(r.label, "no DaemonSet/edge in the render")
        return
    spec = pod_spec(ds)
    edge = next((c for c in spec["containers"] if c["name"] == "edge"), None)
    if edge is None:
        problem(r.where(ds), "no container named edge")
        return
    # --- the config file: from the ConfigMap, through a directory mount ---
    args = edge.get("args", []) or []
    try:
        config_path = args[args.index("--config") + 1]
    except (ValueError, IndexError):
        problem(r.where(ds), "edge container args lack `--config FILE`")
        return
    m = mount_for(config_path, edge)
    vol = volume(spec, m["name"]) if m else None
    if not vol or "configMap" not in vol:
        problem(r.where(ds), f"--config {config_path} is not on a ConfigMap volume mount")
        return
    if m.get("subPath"):
        problem(r.where(ds), f"config mount uses subPath: the kubelet would never update it (no hot reload)")
    cm = r.get("ConfigMap", vol["configMap"]["name"])
    key = posixpath.relpath(config_path, m["mountPath"])
    if cm is None or key not in (cm.get("data") or {}):
        problem(r.where(ds), f"ConfigMap {vol['configMap']['name']} with key {key} (for {config_path}) is not in the render")
        return
    toml_text = cm["data"][key]
    try:
        cfg = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as err:
        problem(r.where(cm, f"key {key}"), f"is not valid TOML: {err}")
        return
    if edge_toml_out is not None:
        edge_toml_out.mkdir(parents=True, exist_ok=True)
        (edge_toml_out / f"{r.label.replace('/', '_')}.toml").write_text(toml_text, encoding="utf-8")

    listeners = cfg.get("listeners", {})
    https = listeners.get("https", {})
    http = listeners.get("http")
    admin = cfg.get("admin", {})

    def addr_port(addr: str | None, default: str, what: str) -> int | None:
        addr = addr or default
        host, _, port = addr.rpartition(":")
        host = host.strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            problem(r.where(cm), f"{what} address {addr} is not an IP:port")
            return None
        if ip.is_loopback:
            problem(r.where(cm), f"{what} listens on {addr}: loopback is unreachable from the node and the kubelet")
        return int(port)

    https_port = addr_port(https.get("address"), "127.0.0.1:8443", "[listeners.https]")
    http_port = addr_port(http.get("address"), "127.0.0.1:8080", "[listeners.http]") if http is not None else None
    admin_port = addr_port(admin.get("address"), "127.0.0.1:9000", "[admin]")
    http3 = https.get("http3", True)

    ports = edge.get("ports", []) or []

    def declared(port: int, proto: str) -> dict | None:
        return next((p for p in ports if p["containerPort"] == port and p.get("protocol", "TCP") == proto), None)

    if https_port is not None:
        tcp = declared(https_port, "TCP")
        if tcp is None:
            problem(r.where(ds), f"no TCP containerPort {https_port} for [listeners.https]")
        elif tcp.get("hostPort") != 443 and not spec.get("hostNetwork"):
            problem(r.where(ds), f"TCP {https_port} is not published on hostPort 443")
        if http3:
            udp = declared(https_port, "UDP")
            if udp is None:
                problem(r.where(ds), f"no UDP containerPort {https_port} for HTTP/3 ([listeners.https] http3 = true)")
            elif udp.get("hostPort") != 443 and not spec.get("hostNetwork"):
                problem(r.where(ds), f"UDP {https_port} is not published on hostPort 443")
    for p in (443,):
        for proto in ("TCP", "UDP"):
            if not any(x.get("hostPort", x["containerPort"] if spec.get("hostNetwork") else None) == p
                       and x.get("protocol", "TCP") == proto for x in ports):
                problem(r.where(ds), f"the edge does not expose {proto} {p} on the node")
    if http_port is not None and declared(http_port, "TCP") is None:
        problem(r.where(ds), f"no TCP containerPort {http_port} for [listeners.http]")
    if admin_port is not None:
        a = declared(admin_port, "TCP")
        if a is None:
            problem(r.where(ds), f"no containerPort {admin_port} for [admin]")
        elif a.get("hostPort"):
            problem(r.where(ds), f"the admin port {admin_port} is published on the node (hostPort); keep it private")
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = edge.get(probe_name) or {}
            get = probe.get("httpGet")
            if not get or resolve_port(get.get("port"), ports) != admin_port:
                problem(r.where(ds), f"{probe_name} must be an httpGet on the admin port {admin_port}")
            elif get.get("path") not in {"/healthz", "/readyz"}:
                problem(r.where(ds), f"{probe_name} path {get.get('path')} is not an admin endpoint (/healthz, /readyz)")
        ann = pod_annotations(ds)
        if ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") != str(admin_port):
            problem(r.where(ds), f"prometheus.io/port {ann.get('prometheus.io/port')} is not the admin port {admin_port}")

    # --- files the TOML names must be on the right volumes ---
    tls_default = (cfg.get("tls") or {}).get("default")
    if not tls_default:
        problem(r.where(cm), "[tls.default] is missing: the edge would serve a generated self-signed certificate")
    else:
        for k in ("cert", "key"):
            path = tls_default[k]
            m = mount_for(path, edge)
            vol = volume(spec, m["name"]) if m else None
            if not vol or "secret" not in vol:
                problem(r.where(ds), f"[tls.default] {k} = {path} is not on a Secret volume")
                continue
            if m.get("subPath"):
                problem(r.where(ds), f"TLS mount uses subPath: rotations would never reach the pod")
            if posixpath.basename(path) not in {"tls.crt", "tls.key"}:
                problem(r.where(cm), f"[tls.default] {k} = {path}: a kubernetes.io/tls Secret has tls.crt and tls.key")
    identity = ((cfg.get("plugins") or {}).get("identity") or {}).get("key_dir")
    if identity:
        m = mount_for(identity, edge)
        vol = volume(spec, m["name"]) if m else None
        if not vol or "secret" not in vol:
            problem(r.where(ds), f"[plugins.identity] key_dir = {identity} is not on a Secret volume")
        elif m.get("subPath"):
            problem(r.where(ds), f"[plugins.identity] key_dir = {identity}: a subPath mount never sees a rotated key")
    server = cfg.get("server", {})
    for k, default in (("pid_file", "/tmp/record-edge.pid"), ("upgrade_sock", "/tmp/record-edge-upgrade.sock")):
        path = server.get(k, default)
        m = mount_for(path, edge)
        vol = volume(spec, m["name"]) if m else None
        if not vol or "emptyDir" not in vol or m.get("readOnly"):
            problem(r.where(ds), f"[server] {k} = {path} is not on a writable emptyDir (the root fs is read-only)")

    # --- upstreams, JWKS and Redis name Services of the render with the right ports ---
    def check_target(host: str, port: int, what: str) -> None:
        svc_name = host.split(".")[0]
        svc = r.get("Service", svc_name)
        if svc is None:
            problem(r.where(cm), f"{what} {host}:{port}: no Service {svc_name} in the render")
        elif not any(p["port"] == port for p in svc["spec"].get("ports", [])):
            problem(r.where(cm), f"{what} {host}:{port}: Service {svc_name} has no port {port}")

    for name, cluster in (cfg.get("clusters") or {}).items():
        for address in cluster.get("addresses", []):
            host, _, port = address.rpartition(":")
            try:
                ipaddress.ip_address(host.strip("[]"))
                problem(r.where(cm), f"[clusters.{name}] uses the IP {address}: use the Service name")
            except ValueError:
                check_target(host, int(port), f"[clusters.{name}]")
    plugins = cfg.get("plugins") or {}
    for what, url in (("[plugins.jwt] jwks_url", (plugins.get("jwt") or {}).get("jwks_url")),
                      ("[plugins.redis] url", (plugins.get("redis") or {}).get("url"))):
        if url:
            u = urlparse(url)
            check_target(u.hostname, u.port or (80 if u.scheme == "http" else 6379), what)

    # --- securityContext, update strategy, PDB ---
    psc = spec.get("securityContext") or {}
    csc = edge.get("securityContext") or {}
    merged = {**psc, **csc}
    if merged.get("runAsNonRoot") is not True or merged.get("runAsUser", 1) == 0:
        problem(r.where(ds), "edge must run as non-root (runAsNonRoot: true, runAsUser != 0)")
    if csc.get("readOnlyRootFilesystem") is not True:
        problem(r.where(ds), "edge container needs readOnlyRootFilesystem: true")
    if csc.get("allowPrivilegeEscalation") is not False:
        problem(r.where(ds), "edge container needs allowPrivilegeEscalation: false")
    if csc.get("privileged"):
        problem(r.where(ds), "edge container must not be privileged")
    caps = csc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problem(r.where(ds), "edge container must drop ALL capabilities")
    if set(caps.get("add") or []) != {"NET_BIND_SERVICE"}:
        problem(r.where(ds), f"edge container must add exactly NET_BIND_SERVICE (has {caps.get('add')})")
    if (merged.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problem(r.where(ds), "edge needs seccompProfile RuntimeDefault")
    strategy = ds["spec"].get("updateStrategy") or {}
    if strategy.get("type") != "RollingUpdate" or (strategy.get("rollingUpdate") or {}).get("maxUnavailable") != 1:
        problem(r.where(ds), "updateStrategy must be RollingUpdate with maxUnavailable 1")
    if not any(selector_matches(p["spec"]["selector"], pod_labels(ds)) for p in r.by_kind.get("PodDisruptionBudget", [])):
        problem(r.where(ds), "no PodDisruptionBudget selects the edge pods")


def check_containers(r: Render) -> None:
    for w in r.workloads():
        spec = pod_spec(w)
        for role, c in all_containers(spec):
            where = r.where(w, f"{role} {c['name']}")
            res = c.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            for k in ("cpu", "memory"):
                if k not in req:
                    problem(where, f"no resources.requests.{k}")
            if "memory" not in lim:
                problem(where, "no resources.limits.memory")
            for k in ("cpu", "memory"):
                if k in req and k in lim and parse_quantity(req[k]) > parse_quantity(lim[k]):
                    problem(where, f"requests.{k} {req[k]} exceeds limits.{k} {lim[k]}")
            if w["kind"] in LONG_RUNNING and role == "container":
                for probe in ("readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        problem(where, f"no {probe}")
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(where, "securityContext.allowPrivilegeEscalation must be false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problem(where, "securityContext.capabilities.drop must include ALL")
            image = c.get("image", "")
            if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                problem(where, f"image {image} has no tag (set it in the kustomization's images:)")
            elif image.endswith(":latest"):
                problem(where, f"image {image} uses :latest")
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            problem(r.where(w), "pod securityContext.runAsNonRoot must be true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problem(r.where(w), "pod securityContext.seccompProfile must be RuntimeDefault")
        sa = spec.get("serviceAccountName", "default")
        if sa == "default":
            problem(r.where(w), "uses the default ServiceAccount; give it its own")
        elif r.get("ServiceAccount", sa) is None:
            problem(r.where(w), f"ServiceAccount {sa} is not in the render")
        if sa not in API_CLIENT_SERVICE_ACCOUNTS and spec.get("automountServiceAccountToken") is not False:
            problem(r.where(w), "automountServiceAccountToken must be false (it does not call the API)")
    for sa in r.by_kind.get("ServiceAccount", []):
        if sa["metadata"]["name"] not in API_CLIENT_SERVICE_ACCOUNTS and sa.get("automountServiceAccountToken") is not False:
            problem(r.where(sa), "automountServiceAccountToken must be false")


def check_secrets_and_refs(r: Render, provided: dict[str, set[str] | None]) -> None:
    """`provided`: Secret name -> keys (None = any key) the overlay's secret source creates."""
    available = dict(provided)
    for s in r.by_kind.get("Secret", []):
        available[s["metadata"]["name"]] = set((s.get("data") or {}).keys()) | set((s.get("stringData") or {}).keys())
        for field in ("data", "stringData"):
            for k, v in (s.get(field) or {}).items():
                text = v
                if field == "data":
                    try:
                        text = base64.b64decode(v).decode("utf-8", "replace")
                    except Exception:
                        text = v
                if "-----BEGIN" in text or "PRIVATE KEY" in text:
                    problem(r.where(s), f"{field}.{k} holds literal key material; reference a Secret created out of band")
    for es in r.by_kind.get("ExternalSecret", []):
        target = (es["spec"].get("target") or {}).get("name", es["metadata"]["name"])
        keys = {d["secretKey"] for d in es["spec"].get("data", []) or []}
        available[target] = None if es["spec"].get("dataFrom") else keys
    for cert in r.by_kind.get("Certificate", []):
        available[cert["spec"]["secretName"]] = {"tls.crt", "tls.key", "ca.crt"}
    configmaps = {c["metadata"]["name"]: set((c.get("data") or {}).keys()) for c in r.by_kind.get("ConfigMap", [])}

    def need(where, name, key=None):
        if name not in available:
            problem(where, f"references Secret {name}, which neither the render nor the overlay's secret source provides")
        elif key is not None and available[name] is not None and key not in available[name]:
            problem(where, f"references key {key} of Secret {name}, which provides only {sorted(available[name])}")

    for w in r.workloads():
        spec = pod_spec(w)
        for v in spec.get("volumes", []) or []:
            if "secret" in v:
                need(r.where(w, f"volume {v['name']}"), v["secret"]["secretName"])
                for item in v["secret"].get("items", []) or []:
                    need(r.where(w, f"volume {v['name']}"), v["secret"]["secretName"], item["key"])
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problem(r.where(w, f"volume {v['name']}"), f"ConfigMap {v['configMap']['name']} is not in the render")
            if "persistentVolumeClaim" in v and r.get("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) is None:
                problem(r.where(w, f"volume {v['name']}"), f"PVC {v['persistentVolumeClaim']['claimName']} is not in the render")
        for role, c in all_containers(spec):
            for e in c.get("env", []) or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    need(r.where(w, f"{role} {c['name']} env {e['name']}"), ref["name"], ref["key"])
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and ref["key"] not in configmaps.get(ref["name"], set()):
                    problem(r.where(w, f"env {e['name']}"), f"ConfigMap key {ref['name']}/{ref['key']} is not in the render")
            for m in c.get("volumeMounts", []) or []:
                if volume(spec, m["name"]) is None and not (w["kind"] == "StatefulSet" and any(
                        t["metadata"]["name"] == m["name"] for t in w["spec"].get("volumeClaimTemplates", []))):
                    problem(r.where(w, f"{role} {c['name']}"), f"mounts volume {m['name']}, which is not defined")


def check_network_policies(r: Render) -> None:
    nps = r.by_kind.get("NetworkPolicy", [])
    deny = [n for n in nps if n["spec"].get("podSelector") == {} and set(n["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not n["spec"].get("ingress") and not n["spec"].get("egress")]
    if not deny:
        problem(r.label, "no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress+Egress, no rules)")
    dns = any(n["spec"].get("podSelector") == {} and any(
        any(p.get("port") == 53 for p in (rule.get("ports") or [])) for rule in (n["spec"].get("egress") or [])) for n in nps)
    if not dns:
        problem(r.label, "no NetworkPolicy allows DNS egress (port 53) for every pod")
    pods = [(w, pod_labels(w)) for w in r.workloads()]
    for n in nps:
        sel = n["spec"].get("podSelector")
        if sel and not any(selector_matches(sel, labels) for _, labels in pods):
            problem(r.where(n), f"podSelector {sel} matches no pod of the render")
        for direction, peer_key in (("ingress", "from"), ("egress", "to")):
            for rule in n["spec"].get(direction) or []:
                for peer in rule.get(peer_key) or []:
                    ps = peer.get("podSelector")
                    if ps and "namespaceSelector" not in peer and not any(selector_matches(ps, l) for _, l in pods):
                        problem(r.where(n), f"{direction} peer podSelector {ps} matches no pod of the render")

    # Who may talk to whom: the edge reaches the services; only services (+ DB jobs) reach Postgres.
    def allowed_from(target: str) -> set[str]:
        names = set()
        for n in nps:
            if not selector_matches(n["spec"].get("podSelector") or {}, {"app.kubernetes.io/name": target}):
                continue
            for rule in n["spec"].get("ingress") or []:
                for peer in rule.get("from") or []:
                    ps = peer.get("podSelector")
                    if ps and "namespaceSelector" not in peer:
                        for w, labels in pods:
                            if selector_matches(ps, labels):
                                names.add(labels.get("app.kubernetes.io/name"))
        return names

    expectations = {
        "auth": {"edge"}, "records": {"edge"}, "web": {"edge"},
        "postgres": {"auth", "records", "migrations", "postgres-backup"},
        "redis": {"edge", "auth", "records"},
        # records' search cache: nobody else may fill (or read) it.
        "redis-cache": {"records"},
    }
    for target, expected in expectations.items():
        got = allowed_from(target)
        if got != expected:
            problem(r.label, f"NetworkPolicies admit {sorted(got)} into {target}; expected exactly {sorted(expected)}")


def check_datastores(r: Render) -> None:
    pg = r.get("StatefulSet", "postgres")
    if pg is None:
        problem(r.label, "no StatefulSet/postgres")
        return
    spec = pod_spec(pg)
    c = next(c for c in spec["containers"] if c["name"] == "postgres")
    limit = parse_quantity(c["resources"]["limits"]["memory"])
    cfg_vol = next((volume(spec, m["name"]) for m in c["volumeMounts"] if m["mountPath"] == "/etc/postgresql"), None)
    cm = r.get("ConfigMap", cfg_vol["configMap"]["name"]) if cfg_vol else None
    if cm is None:
        problem(r.where(pg), "no postgres config ConfigMap mounted at /etc/postgresql")
        return
    conf = parse_conf(cm["data"].get("postgresql.conf", ""))
    conf.update(parse_conf(cm["data"].get("memory.conf", "")))
    where = r.where(cm)
    for key in ("random_page_cost", "effective_io_concurrency", "work_mem", "shared_buffers", "effective_cache_size",
                "archive_mode", "archive_command", "max_connections"):
        if key not in conf:
            problem(where, f"postgresql setting {key} is missing")
    if problems_in(where):
        return
    sb = parse_pg_size(conf["shared_buffers"]) / limit
    if not 0.2 <= sb <= 0.3:
        problem(where, f"shared_buffers {conf['shared_buffers']} is {sb:.0%} of the memory limit {c['resources']['limits']['memory']} (want ~25%)")
    ecs = parse_pg_size(conf["effective_cache_size"]) / limit
    if not 0.5 <= ecs <= 0.8:
        problem(where, f"effective_cache_size {conf['effective_cache_size']} is {ecs:.0%} of the memory limit (want 50-80%)")
    if float(conf["random_page_cost"]) > 1.5:
        problem(where, f"random_page_cost {conf['random_page_cost']} is not tuned for SSD (<= 1.5)")
    if conf["archive_mode"] != "on":
        problem(where, "archive_mode must be on")
    archive_mount = next((m for m in c["volumeMounts"] if m["mountPath"] in conf["archive_command"]), None)
    templates = {t["metadata"]["name"] for t in pg["spec"].get("volumeClaimTemplates", [])}
    data_mount = next((m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/postgresql/data"), None)
    if not archive_mount or archive_mount["name"] not in templates or (data_mount and archive_mount["name"] == data_mount["name"]):
        problem(where, "archive_command must copy to its own persistent volume (a volumeClaimTemplate other than the data one)")
    # max_connections covers every pooled connection the services can open at full scale.
    need = 5
    for hpa in r.by_kind.get("HorizontalPodAutoscaler", []):
        dep = r.get("Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        if dep is None:
            problem(r.where(hpa), f"scales Deployment {hpa['spec']['scaleTargetRef']['name']}, which is not in the render")
            continue
        env = {e["name"]: e.get("value") for e in pod_spec(dep)["containers"][0].get("env", [])}
        if "DATABASE_URL" not in env:
            continue  # no PostgreSQL client (web)
        pool = int(env.get("DB_POOL_SIZE") or 16)
        need += hpa["spec"]["maxReplicas"] * pool
    if int(conf["max_connections"]) < need:
        problem(where, f"max_connections {conf['max_connections']} < HPA maxReplicas x DB_POOL_SIZE + 5 = {need}")
    init = r.get("ConfigMap", next((volume(spec, m["name"])["configMap"]["name"] for m in c["volumeMounts"]
                                    if m["mountPath"] == "/docker-entrypoint-initdb.d"), ""))
    init_sql = "\n".join((init or {}).get("data", {}).values()) if init else ""
    for ext in ("pg_trgm", "unaccent", "citext"):
        if not re.search(rf"CREATE EXTENSION IF NOT EXISTS {ext}\b", init_sql):
            problem(r.where(pg), f"the initdb scripts do not create extension {ext}")

    # The main Redis holds revocations: noeviction. The cache Redis: allkeys-lru, no persistence,
    # and records points its cache there (never at the main one).
    check_redis(r, "StatefulSet", "redis", policy="noeviction")
    if check_redis(r, "Deployment", "redis-cache", policy="allkeys-lru", persistent=False):
        rec = r.get("Deployment", "records")
        env = {e["name"]: e.get("value") for e in (pod_spec(rec)["containers"][0].get("env") or [])} if rec else {}
        url = env.get("RECORDS_CACHE_REDIS_URL") or ""
        if urlparse(url).hostname != "redis-cache":
            problem(r.where(rec) if rec else r.label, f"records RECORDS_CACHE_REDIS_URL {url!r} must name the redis-cache Service")


def check_redis(r: Render, kind: str, name: str, policy: str, persistent: bool | None = None) -> bool:
    """maxmemory 50-80% of the container limit and the eviction policy; False when absent."""
    redis = r.get(kind, name)
    if not redis:
        return False
    rc = next(c for c in pod_spec(redis)["containers"] if c["name"] == "redis")
    rcm = r.get("ConfigMap", volume(pod_spec(redis), "config")["configMap"]["name"])
    rconf = parse_conf(rcm["data"].get("memory.conf", "") + "\n" + rcm["data"].get("redis.conf", ""), sep=" ")
    mm = rconf.get("maxmemory", "")
    m = re.fullmatch(r"(\d+)(mb|gb)", mm.lower())
    if not m:
        problem(r.where(rcm), f"{name} maxmemory {mm!r} is not set in mb/gb")
    else:
        ratio = int(m.group(1)) * (2**20 if m.group(2) == "mb" else 2**30) / parse_quantity(rc["resources"]["limits"]["memory"])
        if not 0.5 <= ratio <= 0.8:
            problem(r.where(rcm), f"{name} maxmemory {mm} is {ratio:.0%} of the container limit (want 50-80%)")
    if rconf.get("maxmemory-policy") != policy:
        problem(r.where(rcm), f"{name} maxmemory-policy is {rconf.get('maxmemory-policy')!r}, want {policy}")
    if persistent is False and (rconf.get("appendonly") != "no" or rconf.get("save", "").strip('"') != ""):
        problem(r.where(rcm), f"{name} is a cache: appendonly no and save \"\" (nothing persisted)")
    return True


def problems_in(where: str) -> bool:
    return any(p.startswith(where) for p in PROBLEMS)


def check_service_env(r: Render, repo: Path) -> None:
    known = set()
    for rs in (repo / "services").rglob("*.rs"):
        known |= set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', rs.read_text(encoding="utf-8")))
    if not known:
        return
    helpers = {"PGUSER", "PGPASSWORD", "RUST_LOG"}
    for w in r.workloads():
        for role, c in all_containers(pod_spec(w)):
            if not re.search(r"record-platform/(auth|records|web)(:|$)", c.get("image", "")):
                continue
            for e in c.get("env", []) or []:
                n = e["name"]
                if n not in known and n not in helpers and not n.startswith("OTEL_"):
                    problem(r.where(w, f"{role} {c['name']}"), f"env {n} is read by none of the services (services/**/*.rs)")


def check_annotations(r: Render) -> None:
    for w in r.workloads():
        ann = pod_annotations(w)
        if ann.get("prometheus.io/scrape") != "true":
            continue
        port = ann.get("prometheus.io/port")
        cports = [p["containerPort"] for _, c in all_containers(pod_spec(w)) for p in c.get("ports", []) or []]
        if port is None or int(port) not in cports:
            problem(r.where(w), f"prometheus.io/port {port} is not a containerPort of the pod")


# --------------------------------------------------------------------------------------------
# 3. metrics and PromQL
# --------------------------------------------------------------------------------------------

def rust_metrics(repo: Path) -> dict[str, set[str]]:
    """metric name -> label names, scanned from the Rust sources."""
    metrics: dict[str, set[str]] = {}
    files = [p for base in ("edge/src", "gateway-plugins/src", "services") for p in (repo / base).rglob("*.rs")]
    define = re.compile(
        r'(?P<ctor>counter|gauge|histogram)\(\s*\w+,\s*"(?P<n1>[a-z_][a-z0-9_]*)"'
        r'|(?P<opts>HistogramOpts|Opts|IntGauge|IntCounter|Gauge|Counter|Histogram)::new\(\s*"(?P<n2>[a-z_][a-z0-9_]*)"')
    for f in files:
        text = f.read_text(encoding="utf-8")
        is_service = "/services/" in str(f)
        matches = list(define.finditer(text))
        for i, m in enumerate(matches):
            name = m.group("n1") or m.group("n2")
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            segment = text[m.end(): min(end, m.end() + 600)]
            lm = re.search(r"&\[([^\]]*)\]", segment)
            labels = set(re.findall(r'"([a-z_][a-z0-9_]*)"', lm.group(1))) if lm else set()
            if is_service:
                labels.add("service")  # Registry::new_custom(None, {service: <name>})
            histogram = m.group("ctor") == "histogram" or m.group("opts") == "HistogramOpts"
            names = [name] + ([f"{name}_bucket", f"{name}_sum", f"{name}_count"] if histogram else [])
            for n in names:
                metrics.setdefault(n, set()).update(labels | ({"le"} if n.endswith("_bucket") else set()))
    return metrics


def external_metrics(repo: Path) -> set[str]:
    out = set()
    for line in (repo / "k8s/test/external-metrics.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(line.split()[0])
    return out


GRAFANA_VARS = [("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"),
                ("${__rate_interval}", "5m"), ("${__range}", "1h")]


def check_promql(where: str, expr: str, ours: dict[str, set[str]], external: set[str], used: set[str]) -> None:
    import promql_parser

    text = expr
    for var, value in GRAFANA_VARS:
        text = text.replace(var, value)
    if re.search(r"\[\s*\$", text):
        problem(where, f"unknown Grafana range variable in: {expr}")
        return
    try:
        ast = promql_parser.parse(text)
    except Exception as err:  # the parser raises ValueError with the reason
        problem(where, f"PromQL does not parse ({err}): {expr}")
        return
    selectors = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            selectors.append(node)
        return True

    promql_parser.walk(ast, visit)
    for vs in selectors:
        name = vs.name
        if name is None:
            problem(where, f"selector without a metric name in: {expr}")
            continue
        used.add(name)
        if name in ours:
            for matcher in vs.matchers.matchers:
                if matcher.name not in ours[name] and matcher.name not in TARGET_LABELS:
                    problem(where, f"{name} has no label {matcher.name} (labels: {sorted(ours[name])})")
        elif name not in external:
            problem(where, f"metric {name} is exported by no Rust code and not listed in k8s/test/external-metrics.txt")


def check_observability(repo: Path, renders: list[Render]) -> None:
    ours = rust_metrics(repo)
    if not any(n.startswith("edge_requests_total") for n in ours):
        problem("edge/src/metrics.rs", "could not scan the edge's metric names (edge_requests_total not found)")
        return
    external = external_metrics(repo)
    used: set[str] = set()
    seen_rules = set()
    for r in renders:
        for rule_obj in r.by_kind.get("PrometheusRule", []):
            for group in rule_obj["spec"]["groups"]:
                for rule in group["rules"]:
                    key = (rule_obj["metadata"]["name"], rule.get("alert") or rule.get("record"))
                    if key in seen_rules:
                        continue
                    seen_rules.add(key)
                    check_promql(f"{r.label}: PrometheusRule/{key[0]} {key[1]}", str(rule["expr"]), ours, external, used)
    required_alert_metrics = {"edge_requests_total", "edge_request_duration_seconds_bucket", "edge_certificate_not_after_seconds",
                              "edge_config_reloads_total", "edge_revocation_redis_errors_total", "edge_upstream_backend_healthy"}
    if seen_rules and not required_alert_metrics <= used:
        problem("k8s/components/monitoring/prometheusrule.yaml", f"no alert uses {sorted(required_alert_metrics - used)}")

    dash_dir = repo / "k8s/components/monitoring/dashboards"
    uids = set()
    for path in sorted(dash_dir.glob("*.json")):
        rel = path.relative_to(repo)
        try:
            dash = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            problem(str(rel), f"is not valid JSON: {err}")
            continue
        for key in ("uid", "title", "panels"):
            if key not in dash:
                problem(str(rel), f"has no {key}")
        if dash.get("uid") in uids:
            problem(str(rel), f"uid {dash.get('uid')} is used by another dashboard")
        uids.add(dash.get("uid"))
        ids = set()
        for panel in dash.get("panels", []):
            if panel.get("id") in ids:
                problem(str(rel), f"panel id {panel.get('id')} is used twice")
            ids.add(panel.get("id"))
            for t in panel.get("targets", []) or []:
                if "expr" in t:
                    check_promql(f"{rel}: panel '{panel.get('title')}'", t["expr"], ours, external, used)
    dash_text = " ".join(p.read_text(encoding="utf-8") for p in dash_dir.glob("*.json"))
    for needed in ("edge_requests_total", "edge_tls_handshakes_total", "edge_ratelimit_decisions_total", "edge_jwt_rejections_total",
                   "requests_total", "db_pool_connections", "pg_up"):
        if f'"{needed}' not in dash_text and f"({needed}" not in dash_text and needed not in dash_text:
            problem(str(dash_dir.relative_to(repo)), f"no dashboard panel uses {needed}")
    if '{protocol}' not in dash_text:
        problem(str(dash_dir.relative_to(repo)), "the edge overview does not split traffic by protocol (h1/h2/h3)")
    scrape = repo / "k8s/components/monitoring/prometheus-scrape-config.yaml"
    try:
        cfg = yaml.safe_load(scrape.read_text(encoding="utf-8"))
        if not cfg.get("scrape_configs"):
            problem(str(scrape.relative_to(repo)), "has no scrape_configs")
    except Exception as err:
        problem(str(scrape.relative_to(repo)), f"does not parse: {err}")


# --------------------------------------------------------------------------------------------

def scan_committed_files(repo: Path) -> None:
    for path in sorted((repo / "k8s").rglob("*")):
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            # This file names the marker itself; nothing else under k8s/ may contain it.
            if "-----BEGIN" in text and path.resolve() != Path(__file__).resolve():
                problem(str(path.relative_to(repo)), "contains PEM material (-----BEGIN): never commit keys or certificates")


def provided_secrets(path: str | None) -> dict[str, set[str] | None]:
    if not path:
        return {}
    out: dict[str, set[str] | None] = {}
    for obj in load_render(path):
        if obj.get("kind") == "Secret":
            out[obj["metadata"]["name"]] = set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True, type=Path)
    ap.add_argument("--render", action="append", default=[], help="NAME=FILE of a `kubectl kustomize` output")
    ap.add_argument("--secrets", action="append", default=[], help="NAME=FILE: Secrets the overlay's out-of-band source makes")
    ap.add_argument("--kube-versions", default="1.29,1.37")
    ap.add_argument("--edge-toml-out", type=Path, help="write each render's edge TOML here (for `edge check`)")
    args = ap.parse_args()
    versions = [v.strip() for v in args.kube_versions.split(",") if v.strip()]
    secrets = dict(s.split("=", 1) for s in args.secrets)

    renders = []
    for item in args.render:
        label, path = item.split("=", 1)
        objs = load_render(path)
        r = Render(label, objs)
        renders.append(r)
        schema_check(label, objs, args.repo, versions)
        check_services(r)
        check_edge(r, args.edge_toml_out)
        check_containers(r)
        check_secrets_and_refs(r, provided_secrets(secrets.get(label)))
        check_network_policies(r)
        check_datastores(r)
        check_service_env(r, args.repo)
        check_annotations(r)
        print(f"    {label}: {len(objs)} objects checked")
    # Secret manifests of the out-of-band sources: schema-valid too.
    for label, path in secrets.items():
        schema_check(f"{label} secrets", load_render(path), args.repo, versions)
    check_observability(args.repo, renders)
    scan_committed_files(args.repo)

    if PROBLEMS:
        print(f"\n{len(PROBLEMS)} problem(s) in the Kubernetes manifests:", file=sys.stderr)
        for p in PROBLEMS:
            print(f"  {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
