"""List servers for the sources tests (docs/sources.md): a real nginx serving generated real-format files,
a fault-injecting server for what nginx won't do on request, and the file generators.

    with Nginx(root_dir) as web:          # nginx from Debian on 127.0.0.1:<free port>
        web.port, web.count("/drop.txt")  # requests seen per path (its access log)
    faults = FaultServer().start()        # threaded; faults.set("/feed", kind, body) then fetch
    faults.count("/feed"); faults.stop()

``envoy_cluster(name, port)`` is the Envoy cluster for either. nginx answers conditional requests
(``ETag`` = mtime-size, ``Last-Modified``) with 304 itself; ``write_file`` sets the mtime so two
versions never share an ETag.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from . import procs


def nginx_binary() -> Optional[str]:
    return shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") or None


def envoy_cluster(name: str, port: int, host: str = "127.0.0.1") -> dict:
    """A static Envoy cluster to a list server on loopback."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]},
    }


class Nginx:
    """nginx on loopback serving ``root``, one process (``master_process off``), logging each
    request's method, path and status so a test can count them."""

    def __init__(self, root: str, workdir: Optional[str] = None, tls: Optional[tuple] = None):
        """``tls``: (certificate, key) paths to serve HTTPS instead of HTTP."""
        self.root = Path(root)
        self.tls = tls
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="client-ip-nginx-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = procs.free_port()
        self.access_log = self.workdir / "access.log"
        self.proc = None

    def start(self) -> "Nginx":
        binary = nginx_binary()
        if not binary:
            raise RuntimeError("nginx is not installed: run `make nginx`")
        w = self.workdir
        conf = w / "nginx.conf"
        tls_lines = (f"\n    ssl_certificate {self.tls[0]};\n    ssl_certificate_key {self.tls[1]};"
                     if self.tls else "")
        conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 64; }}
http {{
  log_format short '$request_method $uri $status $body_bytes_sent';
  access_log {self.access_log} short;
  client_body_temp_path {w}/body; proxy_temp_path {w}/proxy; fastcgi_temp_path {w}/fcgi;
  uwsgi_temp_path {w}/uwsgi; scgi_temp_path {w}/scgi;
  types {{ text/plain txt netset; application/json json; }}
  server {{
    listen 127.0.0.1:{self.port}{" ssl" if self.tls else ""};
    root {self.root};{tls_lines}
  }}
}}
""")
        self.access_log.touch()
        self.proc = procs.start([binary, "-c", str(conf), "-p", str(w)],
                                log_path=str(w / "stdout.log"))
        procs.wait_listening(self.proc, self.port, 10, "nginx")
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def requests(self) -> list:
        """(method, path, status) of every request so far."""
        out = []
        for line in self.access_log.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                out.append((parts[0], parts[1], int(parts[2])))
        return out

    def count(self, path: str, status: Optional[int] = None) -> int:
        return sum(1 for _, p, s in self.requests() if p == path and (status is None or s == status))


# -- the fault server --------------------------------------------------------------------------

class _FaultHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faults"
    sys_version = ""

    def do_GET(self):  # noqa: N802
        server = self.server
        path = self.path.split("?")[0]
        with server.lock:  # type: ignore[attr-defined]
            server.counts[path] = server.counts.get(path, 0) + 1  # type: ignore[attr-defined]
            server.times.setdefault(path, []).append(time.monotonic())  # type: ignore[attr-defined]
            server.headers_seen.append((path, dict((k.lower(), v) for k, v in self.headers.items())))  # type: ignore[attr-defined]
            kind, body = server.routes.get(path, ("status", (404, b"")))  # type: ignore[attr-defined]
        if kind == "status":
            code, payload = body
            self._send(code, payload)
        elif kind == "ok":
            self._send(200, body)
        elif kind == "slow":
            # Headers and half the body at once, the rest after ``delay`` seconds.
            payload, delay = body
            self.send_response(200)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            time.sleep(delay)
            try:
                self.wfile.write(payload[len(payload) // 2:])
            except OSError:
                pass
        elif kind == "reset":
            # Half the body, then a TCP reset (SO_LINGER 0).
            payload = body
            self.send_response(200)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

    def _send(self, code: int, payload: bytes) -> None:
        self.send_response(code)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # noqa: A002
        pass


class _FaultServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultServer:
    """Answers each path as told: ``set(path, "ok", body)``, ``("status", (500, b"..."))``,
    ``("slow", (body, seconds))``, ``("reset", body)``. Counts requests per path, keeps their headers
    and when they came."""

    def __init__(self):
        self.server = _FaultServer(("127.0.0.1", 0), _FaultHandler)
        self.server.lock = threading.Lock()
        self.server.counts = {}
        self.server.times = {}
        self.server.routes = {}
        self.server.headers_seen = []
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "FaultServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def set(self, path: str, kind: str, body) -> None:
        with self.server.lock:
            self.server.routes[path] = (kind, body)

    def count(self, path: str) -> int:
        with self.server.lock:
            return self.server.counts.get(path, 0)

    def times(self, path: str) -> list:
        """When each request for ``path`` arrived (time.monotonic())."""
        with self.server.lock:
            return list(self.server.times.get(path, []))


# -- real-format files -----------------------------------------------------------------------------

def write_file(path: Path, data: bytes, mtime: Optional[float] = None) -> None:
    """Writes atomically (nginx never serves half a file) with a distinct mtime (nginx's ETag is
    mtime-size, so two versions of one size must differ in mtime)."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(data)
    stamp = mtime if mtime is not None else time.time()
    os.utime(tmp, (stamp, stamp))
    os.replace(tmp, path)


def netset(nets: list, name: str = "firehol_level1") -> bytes:
    """A FireHOL-style .netset: a comment header, then one CIDR or address per line."""
    head = [f"#\n# {name}\n#\n# ipv4 hash:net ipset\n#\n# Maintainer      : test\n#"]
    return ("\n".join(head + list(nets)) + "\n").encode()


def drop_txt(nets: list) -> bytes:
    """A Spamhaus-style drop.txt: `; comment` header, `CIDR ; SBLnnn` lines."""
    lines = ["; Spamhaus DROP List 2026/11/29 - (c) 2026 The Spamhaus Project",
             "; Last-Modified: Sun, 29 Nov 2026 10:00:00 GMT", "; Expires: Sun, 29 Nov 2026 11:00:00 GMT"]
    lines += [f"{n} ; SBL{100000 + i}" for i, n in enumerate(nets)]
    return ("\n".join(lines) + "\n").encode()


def aws_ip_ranges(v4: list, v6: list) -> bytes:
    """An ``ip-ranges.json`` shaped like AWS's: entries (prefix, service, region)."""
    return json.dumps({
        "syncToken": str(int(time.time())), "createDate": "2026-11-29-10-00-00",
        "prefixes": [{"ip_prefix": p, "region": r, "service": s, "network_border_group": r}
                     for p, s, r in v4],
        "ipv6_prefixes": [{"ipv6_prefix": p, "region": r, "service": s, "network_border_group": r}
                          for p, s, r in v6],
    }, indent=2).encode()


def gcp_cloud_json(entries: list) -> bytes:
    """A ``cloud.json`` shaped like Google's: entries (prefix, service, scope)."""
    prefixes = []
    for p, service, scope in entries:
        key = "ipv6Prefix" if ":" in p else "ipv4Prefix"
        prefixes.append({key: p, "service": service, "scope": scope})
    return json.dumps({"syncToken": "1", "creationTime": "2026-11-29T10:00:00", "prefixes": prefixes},
                      indent=2).encode()


def azure_service_tags(tags: list) -> bytes:
    """A Service Tags file shaped like Azure's: tags (name, region, system_service, prefixes)."""
    return json.dumps({"changeNumber": 1, "cloud": "Public", "values": [
        {"name": name, "id": name, "properties": {
            "changeNumber": 1, "region": region, "regionId": 0, "platform": "Azure",
            "systemService": service, "addressPrefixes": prefixes, "networkFeatures": ["API"]}}
        for name, region, service, prefixes in tags]}, indent=2).encode()


def big_text_list(n: int, base: str = "10.0.0.0", step: int = 2) -> bytes:
    """``n`` single addresses, ``step`` apart from ``base`` (so they never merge): a list of n
    entries, like a large threat feed or a country list."""
    start = int(ipaddress.IPv4Address(base))
    return "".join(f"{ipaddress.IPv4Address(start + i * step)}\n" for i in range(n)).encode()
