"""The connection-level mode (docs/network-mode.md) under test: Envoy with the filter as a NETWORK filter before
tcp_proxy, TLS passthrough by SNI, TCP upstreams that count the connections they accept.

The listeners are built from the shipped manifests (``envoyfilter/gateway-tls-passthrough.yaml``,
``envoyfilter/sidecar-inbound-tcp.yaml``), loaded with ``manifests.load``: the proxy_protocol
listener filter, the set_filter_state and wasm network filters and the cluster's upstream PROXY
protocol transport socket are the manifest's values; the tests replace only the module's filename and,
when they need another one, the configuration::

    [proxy_protocol]                 listener filter, optional
    tls_inspector                    listener filter (SNI for filter_chain_match and for the filter)
    chain per upstream name          filter_chain_match server_names: [<name>]
        [set_filter_state]           network filter
        [client-ip-filter wasm]      network filter (envoy.filters.network.wasm)
        tcp_proxy -> cluster <name>  access log (JSON lines) with the filter state
    default chain (no/other SNI, plain TCP) -> cluster "plain"

``Upstream`` is a TCP server (optionally TLS with its own certificate, optionally reading a PROXY
header first) that answers one line per connection and counts ``accepted`` connections: a refused
connection must leave it at 0. ``Certificates`` makes a CA and a server certificate per name with the
openssl CLI. ``tls_exchange`` / ``tcp_exchange`` are the clients (Python ``ssl`` and raw sockets, a
PROXY v1/v2 header first when given); ``s_client`` drives ``openssl s_client``.
"""
from __future__ import annotations

import copy
import ipaddress
import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from . import envoy as E
from . import manifests, procs

GATEWAY_PASSTHROUGH = manifests.ENVOYFILTER_DIR / "gateway-tls-passthrough.yaml"
SIDECAR_TCP = manifests.ENVOYFILTER_DIR / "sidecar-inbound-tcp.yaml"

NETWORK_WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
NETWORK_NATIVE_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.dynamic_modules.v3."
                       "DynamicModuleNetworkFilter")
HTTP_WASM_TYPE = manifests.WASM_TYPE
TCP_PROXY_TYPE = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS_INSPECTOR = {"name": "envoy.filters.listener.tls_inspector", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}

TCP_LOG_FORMAT = {
    "downstream_remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "downstream_direct": "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%",
    "sni": "%REQUESTED_SERVER_NAME%",
    "client_ip": "%FILTER_STATE(wasm.client_ip:PLAIN)%",
    "decision": "%FILTER_STATE(wasm.client_ip_decision:PLAIN)%",
    "rule": "%FILTER_STATE(wasm.client_ip_rule:PLAIN)%",
    "client_country": "%FILTER_STATE(wasm.client_country:PLAIN)%",
    "client_asn": "%FILTER_STATE(wasm.client_asn:PLAIN)%",
    "upstream_host": "%UPSTREAM_HOST%",
    "bytes_received": "%BYTES_RECEIVED%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%CONNECTION_TERMINATION_DETAILS%",
}


# -- manifests ------------------------------------------------------------------------------------

def network_wasm_filter(frags: manifests.Fragments, configuration: manifests.Configuration = None,
                        wasm_path: Optional[str] = None) -> dict:
    """The manifest's wasm NETWORK filter, module filename (and configuration) replaced."""
    for f in frags.network_filters:
        if f.get("typed_config", {}).get("@type") == NETWORK_WASM_TYPE:
            f = copy.deepcopy(f)
            cfg = f["typed_config"]["config"]
            cfg["vm_config"]["code"]["local"]["filename"] = wasm_path or manifests.wasm_path_from_env()
            if configuration is not None:
                cfg["configuration"]["value"] = (configuration if isinstance(configuration, str)
                                                 else json.dumps(configuration))
            return f
    raise LookupError(f"{frags.source}: no NETWORK_FILTER patch of type {NETWORK_WASM_TYPE}")


def native_network_filter(wasm_filter: dict, native_path: Optional[str] = None) -> dict:
    """The native build's network filter (``envoy.filters.network.dynamic_modules``) standing in for
    ``wasm_filter`` (a wasm network filter as a test loads it): same name, same configuration string,
    the module file ``native_path`` (default manifests.native_path_from_env)."""
    native_path = native_path or manifests.native_path_from_env()
    return {"name": wasm_filter["name"], "typed_config": {
        "@type": NETWORK_NATIVE_TYPE,
        "dynamic_module_config": {"module": {"local": {"filename": native_path}}},
        "filter_name": "client_ip_filter",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": wasm_filter["typed_config"]["config"]["configuration"]["value"]}}}


def as_http_filter(network_filter: dict) -> dict:
    """The same plugin as an HTTP filter (for the mismatch tests): same PluginConfig, HTTP type."""
    f = copy.deepcopy(network_filter)
    f["typed_config"]["@type"] = HTTP_WASM_TYPE
    return f


def cluster_merge(frags: manifests.Fragments) -> dict:
    """The upstream PROXY protocol socket of the manifest's DestinationRule (``trafficPolicy.proxyProtocol``)
    as a cluster fragment for a plain Envoy: the socket Istio wraps around the cluster's raw buffer
    (its translation is tested with Istio's own code in tests/test_istio_xds.py)."""
    with open(frags.source) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    for doc in docs:
        if doc.get("kind") == "DestinationRule":
            version = doc["spec"]["trafficPolicy"]["proxyProtocol"]["version"]
            return {"transport_socket": {
                "name": "envoy.transport_sockets.upstream_proxy_protocol",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3."
                             "ProxyProtocolUpstreamTransport",
                    "config": {"version": version},
                    "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}},
                }}}
    raise LookupError(f"{frags.source}: no DestinationRule with trafficPolicy.proxyProtocol")


def manifest_configuration(frags: manifests.Fragments) -> dict:
    f = network_wasm_filter(frags)
    return json.loads(f["typed_config"]["config"]["configuration"]["value"])


# -- certificates ---------------------------------------------------------------------------------

def openssl_binary() -> str:
    path = shutil.which("openssl")
    if not path:
        raise FileNotFoundError("openssl is not installed: run `make openssl`")
    return path


class Certificates:
    """A throw-away CA and one server certificate per name (SAN DNS:<name>), made with openssl."""

    def __init__(self, workdir: Path, names: list[str]):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.pem"
        self.names = list(names)
        ossl = openssl_binary()
        procs.note_program(ossl)
        run = lambda *a: subprocess.run([ossl, *a], check=True, capture_output=True, cwd=self.dir)  # noqa: E731
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=client-ip-test-ca",
            "-keyout", "ca.key", "-out", "ca.pem")
        for name in self.names:
            (self.dir / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\n")
            run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
            run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")

    def pair(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return ctx


# -- PROXY header reading (the upstream side of the upstream PROXY protocol socket) ---------------

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed inside the PROXY header")
        out += chunk
    return out


def read_proxy_source(sock: socket.socket) -> str:
    """Reads a PROXY v1 or v2 header off ``sock``; returns the source as ``addr:port`` (``LOCAL`` for
    a v2 LOCAL command, ``UNKNOWN`` for v1 UNKNOWN)."""
    first = _recv_exact(sock, 12)
    if first == V2_SIG:
        ver_cmd, fam = _recv_exact(sock, 2)
        (length,) = struct.unpack("!H", _recv_exact(sock, 2))
        body = _recv_exact(sock, length)
        if ver_cmd & 0x0F == 0:
            return "LOCAL"
        if fam >> 4 == 1:
            src = ipaddress.IPv4Address(body[0:4])
            (port,) = struct.unpack("!H", body[8:10])
            return f"{src}:{port}"
        if fam >> 4 == 2:
            src = ipaddress.IPv6Address(body[0:16])
            (port,) = struct.unpack("!H", body[32:34])
            return f"[{src}]:{port}"
        return "UNSPEC"
    line = first
    while not line.endswith(b"\r\n"):
        line += _recv_exact(sock, 1)
        if len(line) > 107:
            raise ValueError("PROXY v1 line too long")
    parts = line.decode().split()
    if parts[1] == "UNKNOWN":
        return "UNKNOWN"
    src, port = parts[2], parts[4]
    return f"[{src}]:{port}" if ":" in src else f"{src}:{port}"


# -- upstreams ------------------------------------------------------------------------------------

class Upstream:
    """A TCP server on loopback that counts accepted connections and answers one line per connection:
    ``<name> proxy=<PROXY source or -> got=<the line it read>``. With ``tls=(cert, key)`` it
    terminates TLS (after the PROXY header, when ``expect_proxy``)."""

    def __init__(self, name: str, tls: Optional[tuple[Path, Path]] = None, expect_proxy: bool = False):
        self.name = name
        self.expect_proxy = expect_proxy
        self.ctx: Optional[ssl.SSLContext] = None
        if tls:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self.accepted = 0
        self.proxy_sources: list[str] = []
        self.errors: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> "Upstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            source = "-"
            if self.expect_proxy:
                source = read_proxy_source(conn)
                with self._lock:
                    self.proxy_sources.append(source)
            stream: Any = conn
            if self.ctx is not None:
                stream = self.ctx.wrap_socket(conn, server_side=True)
            line = b""
            while not line.endswith(b"\n") and len(line) < 1024:
                chunk = stream.recv(1024)
                if not chunk:
                    break
                line += chunk
            stream.sendall(f"{self.name} proxy={source} got={line.decode(errors='replace').strip()}\n".encode())
            if self.ctx is not None:
                try:
                    stream.unwrap()
                except (OSError, ssl.SSLError):
                    pass
        except (OSError, ValueError, ssl.SSLError) as exc:
            with self._lock:
                self.errors.append(repr(exc))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def wait_accepted(self, n: int, timeout: float = 5.0) -> int:
        return procs.wait_until(lambda: self.accepted >= n and self.accepted, timeout,
                                what=f"{self.name} to accept {n} connection(s)")


# -- clients --------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a client saw: the upstream's reply line, or why there was none."""
    reply: Optional[str]
    error: Optional[str] = None

    @property
    def served(self) -> bool:
        return bool(self.reply)


def tcp_exchange(port: int, proxy: bytes = b"", message: bytes = b"ping\n", host: str = "127.0.0.1",
                 timeout: float = 5.0, source: Optional[str] = None) -> Outcome:
    """Raw TCP (from the loopback address ``source`` when given): the PROXY header, one line, then
    everything until the server closes."""
    try:
        with socket.create_connection((host, port), timeout=timeout,
                                      source_address=(source, 0) if source else None) as s:
            s.sendall(proxy + message)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            text = data.decode(errors="replace").strip()
            return Outcome(text or None, None if text else "closed without a reply")
    except OSError as exc:
        return Outcome(None, repr(exc))


def tls_exchange(port: int, sni: Optional[str], ctx: ssl.SSLContext, proxy: bytes = b"",
                 message: bytes = b"ping\n", host: str = "127.0.0.1", timeout: float = 5.0) -> Outcome:
    """A TLS client (Python ssl) through Envoy's passthrough: the PROXY header in clear text first
    (as an L4 balancer sends it), then the handshake with ``sni`` verified against the test CA."""
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return Outcome(None, repr(exc))
    try:
        if proxy:
            raw.sendall(proxy)
        tls = ctx.wrap_socket(raw, server_hostname=sni)
        tls.sendall(message)
        data = b""
        while True:
            try:
                chunk = tls.recv(4096)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\n"):
                break
        return Outcome(data.decode(errors="replace").strip() or None)
    except (OSError, ssl.SSLError) as exc:
        return Outcome(None, repr(exc))
    finally:
        raw.close()


def s_client(port: int, sni: str, cafile: Path, message: bytes = b"ping\n", timeout: float = 10.0) -> Outcome:
    """``openssl s_client`` (no PROXY header of its own: put HAProxy in front for that)."""
    argv = [openssl_binary(), "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni,
            "-CAfile", str(cafile), "-verify_return_error", "-quiet"]
    procs.note_program(argv[0])
    try:
        proc = subprocess.run(argv, input=message, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(None, "s_client timed out")
    out = proc.stdout.decode(errors="replace").strip()
    return Outcome(out or None, None if out else f"exit {proc.returncode}: {proc.stderr.decode()[-300:]}")


# -- Envoy ----------------------------------------------------------------------------------------

@dataclass
class Chain:
    """One SNI filter chain (``server_names`` empty: the default chain) to ``cluster``."""
    cluster: str
    server_names: list = field(default_factory=list)


@dataclass
class NetworkListener:
    """A listener with the filter as a network filter before tcp_proxy (or, ``http_filter=True``,
    an HTTP connection manager with the module as an HTTP filter, for the mismatch tests)."""
    frags: manifests.Fragments
    configuration: manifests.Configuration = None
    chains: list = field(default_factory=lambda: [Chain("plain")])
    proxy_protocol: bool = True
    wasm: bool = True
    http_filter: bool = False      # load the same plugin as an HTTP filter instead
    wasm_path: Optional[str] = None
    listen_address: str = "127.0.0.1"
    name: str = "tcp"
    build: str = "wasm"            # "native": the dynamic-module network filter, same configuration
    native_path: Optional[str] = None


def tcp_listener(spec: NetworkListener, port: int, access_log_path: str) -> dict:
    frags = spec.frags
    listener_filters = []
    if spec.proxy_protocol:
        pp = frags.proxy_protocol or manifests.load(GATEWAY_PASSTHROUGH).proxy_protocol
        listener_filters.append(pp)
    listener_filters.append(copy.deepcopy(TLS_INSPECTOR))
    wasm_filter = network_wasm_filter(frags, spec.configuration, spec.wasm_path)
    if spec.build == "native":
        wasm_filter = native_network_filter(wasm_filter, spec.native_path)
    sfs = frags.set_filter_state
    chains = []
    for chain in spec.chains:
        log = [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": E.FILE_LOG_TYPE, "path": access_log_path,
            "log_format": {"json_format": dict(TCP_LOG_FORMAT, chain=chain.cluster)}}}]
        filters = []
        if sfs:
            filters.append(copy.deepcopy(sfs))
        if spec.http_filter:
            filters.append(_hcm_with(as_http_filter(wasm_filter) if spec.wasm else None, chain.cluster, log))
        else:
            if spec.wasm:
                filters.append(copy.deepcopy(wasm_filter))
            filters.append({"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": TCP_PROXY_TYPE, "stat_prefix": f"tcp_{chain.cluster}", "cluster": chain.cluster,
                "access_log": log}})
        fc: dict = {"filters": filters}
        if chain.server_names:
            fc["filter_chain_match"] = {"server_names": list(chain.server_names)}
        chains.append(fc)
    return {"name": spec.name,
            "address": {"socket_address": {"address": spec.listen_address, "port_value": port}},
            "listener_filters": listener_filters, "filter_chains": chains}


def _hcm_with(http_wasm: Optional[dict], cluster: str, log: list) -> dict:
    filters = [http_wasm] if http_wasm else []
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": E.ROUTER_TYPE}})
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": E.HCM_TYPE, "stat_prefix": "http_mismatch", "codec_type": "AUTO",
        "access_log": log,
        "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "5s"}}]}]},
        "http_filters": filters}}


def static_cluster(name: str, port: int, merge: Optional[dict] = None) -> dict:
    c = {"name": name, "type": "STATIC", "connect_timeout": "1s",
         "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
             "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
    if merge:
        c.update(copy.deepcopy(merge))
    return c


class NetworkEnvoy(E.Envoy):
    """The harness Envoy (process, admin, stats, logs) with network listeners instead of the HTTP one.
    ``listeners``: NetworkListener specs; the first one is on ``self.port``, the others on
    ``self.ports[i]``. ``clusters``: {name: (port, merge-or-None)}."""

    def __init__(self, listeners: list, clusters: dict, workdir: Optional[str] = None,
                 name: str = "tcp-envoy"):
        super().__init__(E.EnvoyOptions(listen_address=listeners[0].listen_address),
                         upstream_port=0, workdir=workdir, name=name)
        self.specs = list(listeners)
        self.clusters = dict(clusters)
        self.ports = [self.port] + [procs.free_port(s.listen_address) for s in self.specs[1:]]

    def write_config(self) -> Path:
        boot = {
            "node": {"id": "client-ip-test", "cluster": "client-ip-test"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "static_resources": {
                "clusters": [static_cluster(n, p, m) for n, (p, m) in self.clusters.items()],
                "listeners": [tcp_listener(s, port, str(self.access_log_path))
                              for s, port in zip(self.specs, self.ports)],
            },
        }
        self.config_path.write_text(yaml.safe_dump(boot, sort_keys=False))
        return self.config_path

    def log_entry(self, downstream: str, timeout: float = 5.0) -> dict:
        """The access-log entry of the connection whose downstream address (PROXY source with its
        port) is ``downstream``."""
        def find():
            hits = [e for e in self.access_log_lines() if e.get("downstream_remote") == downstream]
            if len(hits) > 1:
                raise AssertionError(f"{len(hits)} access-log lines for {downstream}")
            return hits[0] if hits else None
        return procs.wait_until(find, timeout, what=f"access-log line for {downstream}")

    def trapped(self) -> list:
        """Log lines that show the VM failed (a trap, a panic, a failed VM call)."""
        needles = ("panicked", "unreachable", "wasm trap", "Function: proxy_on", "Plugin configured to fail",
                   "VM failed", "failed to")
        return [ln for ln in self.log_text().splitlines() if any(n in ln for n in needles)]


_port_counter = [20000]
_port_lock = threading.Lock()


def unique_port() -> int:
    """A source port never used twice in a run: the key of a connection's access-log line."""
    with _port_lock:
        _port_counter[0] += 1
        if _port_counter[0] > 65000:
            _port_counter[0] = 20001
        return _port_counter[0]


def wait_counter(env: E.Envoy, name: str, at_least: int, timeout: float = 3.0) -> int:
    return procs.wait_until(lambda: env.counter(name) >= at_least and env.counter(name), timeout,
                            what=f"{name} >= {at_least}")


def upstream_connections(env: E.Envoy, cluster: str) -> int:
    """How many connections Envoy has opened to ``cluster`` (its ``upstream_cx_total``)."""
    return int(env.stats().get(f"cluster.{cluster}.upstream_cx_total", 0))


def settled_count(env: E.Envoy, upstream: "Upstream", opened_before: int, accepted_before: int,
                  timeout: float = 5.0) -> int:
    """The connections ``upstream`` accepted since ``accepted_before``, once it agrees with Envoy:
    Envoy has no downstream connection left open (so it will open no more upstream connections for
    the exchange just made), and the upstream has accepted every connection Envoy opened to its
    cluster since ``opened_before``. Fails after ``timeout`` rather than guessing."""
    def agreed():
        stats = env.stats()
        active = sum(v for k, v in stats.items()
                     if k.startswith("listener.") and k.endswith(".downstream_cx_active")
                     and not k.startswith("listener.admin."))
        opened = int(stats.get(f"cluster.{upstream.name}.upstream_cx_total", 0)) - opened_before
        accepted = upstream.accepted - accepted_before
        return active == 0 and accepted == opened and (accepted,)
    return procs.wait_until(agreed, timeout,
                            what=f"Envoy's connections to {upstream.name} to close and be accepted")[0]
