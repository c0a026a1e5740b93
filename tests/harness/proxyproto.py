"""Raw-socket clients: PROXY protocol v1/v2 headers followed by hand-written HTTP/1.x requests.

Nothing here normalises what the test wrote: header lines go out byte for byte (duplicates, mixed
case, odd spacing), so the filter sees exactly what a hostile client could send.

    resp = request(port, proxy=v2("203.0.113.7", "10.0.0.1", 40000, 443),
                   headers=[("X-Forwarded-For", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")],
                   source="127.0.0.2")
    resp.status, resp.header("content-type"), resp.echo["headers"]

``curl()`` drives HTTP/2 (``--http2-prior-knowledge``) and optionally PROXY v1 (``--haproxy-protocol``).
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

from . import procs

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

HeaderList = Sequence[Union[str, tuple]]


# -- PROXY protocol encoders ---------------------------------------------------------------------

def _default_dst(src: str) -> str:
    return "::1" if ":" in src else "127.0.0.1"


def v1(src: str, dst: Optional[str] = None, sport: int = 40000, dport: int = 443,
       family: Optional[str] = None) -> bytes:
    """A PROXY v1 line. ``family`` defaults to TCP4/TCP6 from ``src``. Addresses go out as written."""
    dst = dst or _default_dst(src)
    if family is None:
        family = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v1_unknown() -> bytes:
    """``PROXY UNKNOWN``: the receiver must use the real connection addresses."""
    return b"PROXY UNKNOWN\r\n"


def v2(src: str, dst: Optional[str] = None, sport: int = 40000, dport: int = 443,
       command: str = "PROXY", tlvs: Iterable[tuple] = ()) -> bytes:
    """A PROXY v2 binary header, TCP over IPv4 or IPv6 (chosen from ``src``; ``::ffff:a.b.c.d`` is
    sent as IPv6, i.e. a mapped address on the wire). ``command`` "LOCAL" sends a LOCAL header whose
    addresses the receiver must ignore. ``tlvs``: (type, bytes) pairs appended after the addresses."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst or _default_dst(src))
    if s.version != d.version:
        raise ValueError("src and dst must be the same family")
    if s.version == 4:
        fam, addrs = 0x11, s.packed + d.packed + struct.pack("!HH", sport, dport)
    else:
        fam, addrs = 0x21, s.packed + d.packed + struct.pack("!HH", sport, dport)
    tlv_bytes = b"".join(struct.pack("!BH", t, len(v)) + v for t, v in tlvs)
    ver_cmd = {"PROXY": 0x21, "LOCAL": 0x20}[command]
    body = addrs + tlv_bytes
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + struct.pack("!H", len(body)) + body


# Private-link TLVs (PROXY v2 type, value) as the cloud load balancers send them: AWS PrivateLink
# (0xEA, subtype 0x01 + the VPC endpoint id), Azure Private Link (0xEE, subtype 0x01 + LinkID u32
# little-endian), GCP Private Service Connect (0xE0, PSC connection id u64 big-endian).
PP2_TYPE_AWS, PP2_TYPE_AZURE, PP2_TYPE_GCP = 0xEA, 0xEE, 0xE0


def tlv_aws_vpce(vpce_id: str, subtype: int = 0x01) -> tuple:
    return (PP2_TYPE_AWS, bytes([subtype]) + vpce_id.encode("latin-1"))


def tlv_azure_link(link_id: int, subtype: int = 0x01) -> tuple:
    return (PP2_TYPE_AZURE, bytes([subtype]) + struct.pack("<I", link_id))


def tlv_gcp_psc(psc_id: int) -> tuple:
    return (PP2_TYPE_GCP, struct.pack("!Q", psc_id))


def v2_local() -> bytes:
    """A v2 LOCAL header with no address block (AF_UNSPEC): a health check from the proxy itself."""
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


# -- HTTP/1.x ------------------------------------------------------------------------------------

def build_request(method: str = "GET", path: str = "/", host: Optional[str] = "example.com",
                  headers: HeaderList = (), body: bytes = b"", version: str = "HTTP/1.1",
                  close: bool = True) -> bytes:
    """An HTTP/1.x request. ``headers`` items are (name, value) pairs or raw lines (without CRLF),
    sent in order, byte for byte. ``host`` None sends no Host line (put your own in ``headers``)."""
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    for h in headers:
        lines.append(h if isinstance(h, str) else f"{h[0]}: {h[1]}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list = field(default_factory=list)  # [(lower-case name, value)], in order
    body: bytes = b""
    local: Optional[tuple] = None  # the client's (address, port) for this connection, when known

    def header(self, name: str) -> Optional[str]:
        vals = self.header_values(name)
        return vals[0] if vals else None

    def header_values(self, name: str) -> list:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def echo(self) -> dict:
        """The echo upstream's JSON report (fails loudly when the reply did not come from it)."""
        assert self.status == 200, f"expected the upstream's 200, got {self.status}: {self.text!r}"
        assert (self.header("content-type") or "").startswith("application/json"), self
        return json.loads(self.body)

    def upstream_header_values(self, name: str) -> list:
        """Every value the upstream received for ``name``, one per header line, in order."""
        name = name.lower()
        return [v for k, v in self.echo["headers"] if k == name]


class ConnectionClosed(Exception):
    """The peer closed the connection before a complete response arrived."""


class Connection:
    """One TCP connection to ``port`` on ``host``, optionally bound to ``source`` and opened with a
    PROXY header; several requests may be sent on it in turn (keep-alive)."""

    def __init__(self, port: int, proxy: bytes = b"", source: Optional[str] = None,
                 host: str = "127.0.0.1", timeout: float = 10.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.local = self.sock.getsockname()
        self._buf = b""
        if proxy:
            self.sock.sendall(proxy)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, raw: bytes, head: bool = False) -> Response:
        self.send(raw)
        return self.read_response(head=head)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self._buf:
            if not self._fill():
                raise ConnectionClosed(f"closed while waiting for {sep!r}; got {self._buf!r}")
        i = self._buf.index(sep)
        out, self._buf = self._buf[:i], self._buf[i + len(sep):]
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise ConnectionClosed(f"closed with {len(self._buf)}/{n} body bytes")
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_response(self, head: bool = False) -> Response:
        while True:
            head_bytes = self._read_until(b"\r\n\r\n").decode("latin-1")
            lines = head_bytes.split("\r\n")
            version, status, *reason = lines[0].split(" ", 2)
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
            resp = Response(int(status), reason[0] if reason else "", version, headers)
            if 100 <= resp.status < 200:  # interim (100 Continue): read the final one
                continue
            break
        if head or resp.status in (204, 304):
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")  # (no trailers expected)
                    break
                body += self._read_exact(size)
                self._read_until(b"\r\n")
            resp.body = body
        elif resp.header("content-length") is not None:
            resp.body = self._read_exact(int(resp.header("content-length")))
        else:
            while self._fill():
                pass
            resp.body, self._buf = self._buf, b""
        return resp

    def closed_by_peer(self, timeout: float = 2.0) -> bool:
        """True when the peer closes (or resets) the connection without sending anything more."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request(port: int, proxy: bytes = b"", method: str = "GET", path: str = "/",
            host: Optional[str] = "example.com", headers: HeaderList = (), body: bytes = b"",
            version: str = "HTTP/1.1", source: Optional[str] = None, target: str = "127.0.0.1",
            timeout: float = 10.0) -> Response:
    """One request on a fresh connection (``Connection: close``), optionally PROXY-prefixed."""
    raw = build_request(method, path, host, headers, body, version, close=True)
    with Connection(port, proxy=proxy, source=source, host=target, timeout=timeout) as c:
        resp = c.request(raw, head=(method == "HEAD"))
        resp.local = c.local[:2]
        return resp


def raw_exchange(port: int, data: bytes, source: Optional[str] = None, timeout: float = 5.0) -> bytes:
    """Send ``data`` and return every byte received until the peer closes (a reset counts as a
    close). A peer that neither answers nor closes within ``timeout`` raises ``TimeoutError``: a
    hung Envoy is not "no answer"."""
    with Connection(port, source=source, timeout=timeout) as c:
        c.send(data)
        out = b""
        try:
            while True:
                chunk = c.sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            raise TimeoutError(f"port {port}: no close within {timeout} s (received {out[:80]!r})") from None
        except ConnectionResetError:
            pass
        return out


# -- HTTP/2 (and anything else) through curl ------------------------------------------------------

def curl(port: int, path: str = "/", host: str = "example.com", headers: HeaderList = (),
         http2: bool = True, haproxy_protocol: bool = False, source: Optional[str] = None,
         target: str = "127.0.0.1", timeout: float = 10.0) -> Response:
    """A request through curl: HTTP/2 with prior knowledge by default; ``haproxy_protocol`` makes curl
    send a PROXY v1 line carrying its real connection addresses (``source`` binds the client)."""
    url_host = f"[{target}]" if ":" in target else target
    with tempfile.TemporaryDirectory() as tmp:
        hdr_file = os.path.join(tmp, "headers")
        argv = ["curl", "-sS", "--max-time", str(timeout), "-D", hdr_file, "-o", "-",
                "-H", f"Host: {host}"]
        argv.append("--http2-prior-knowledge" if http2 else "--http1.1")
        if haproxy_protocol:
            argv.append("--haproxy-protocol")
        if source:
            argv += ["--interface", source]
        for h in headers:
            argv += ["-H", h if isinstance(h, str) else f"{h[0]}: {h[1]}"]
        argv.append(f"http://{url_host}:{port}{path}")
        procs.note_program(argv[0])
        done = subprocess.run(argv, capture_output=True, timeout=timeout + 5)
        if done.returncode != 0:
            raise RuntimeError(f"curl failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        with open(hdr_file, "rb") as fh:
            blocks = [b for b in fh.read().decode("latin-1").split("\r\n\r\n") if b.strip()]
    lines = blocks[-1].split("\r\n")
    version, status, *reason = lines[0].split(" ", 2)
    headers_out = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers_out.append((name.strip().lower(), value.strip()))
    return Response(int(status), reason[0] if reason else "", version, headers_out, done.stdout)
