"""HAProxy in front of Envoy: the real PROXY protocol sender of the chain tests.

    with HAProxy(backend_port=env.port, mode="tcp", send_proxy="v2", workdir=tmp) as hap:
        request(hap.port, source="127.0.0.2")   # Envoy sees PROXY source 127.0.0.2

``mode="http"`` adds ``option forwardfor`` (HAProxy appends the client to X-Forwarded-For) unless
``forwardfor=False``. HAProxy runs in the foreground (``-db``) in its own process group.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from . import procs


def haproxy_binary() -> Optional[str]:
    return shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


class HAProxy:
    def __init__(self, backend_port: int, mode: str = "tcp", send_proxy: str = "v2",
                 forwardfor: bool = True, workdir: Optional[str] = None, name: str = "haproxy",
                 backend_host: str = "127.0.0.1"):
        assert mode in ("tcp", "http") and send_proxy in ("v1", "v2", "none")
        self.backend = (backend_host, backend_port)
        self.mode, self.send_proxy, self.forwardfor = mode, send_proxy, forwardfor
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="client-ip-haproxy-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = procs.free_port()
        self.config_path = self.workdir / f"{name}.cfg"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None

    def config(self) -> str:
        proxy_kw = {"v1": " send-proxy", "v2": " send-proxy-v2", "none": ""}[self.send_proxy]
        http_opts = ""
        if self.mode == "http":
            http_opts = "    option http-server-close\n"
            if self.forwardfor:
                http_opts += "    option forwardfor\n"
        return (
            "global\n"
            "    maxconn 256\n"
            "defaults\n"
            f"    mode {self.mode}\n"
            "    timeout connect 2s\n"
            "    timeout client 10s\n"
            "    timeout server 10s\n"
            f"frontend fe\n"
            f"    bind 127.0.0.1:{self.port}\n"
            f"{http_opts}"
            "    default_backend be\n"
            "backend be\n"
            f"    server envoy {self.backend[0]}:{self.backend[1]}{proxy_kw}\n"
        )

    def start(self, timeout: float = 10.0) -> "HAProxy":
        binary = haproxy_binary()
        if not binary:
            raise FileNotFoundError("haproxy is not installed: run `make haproxy`")
        self.config_path.write_text(self.config())
        self.proc = procs.start([binary, "-db", "-f", str(self.config_path)], log_path=str(self.log_path))
        procs.wait_listening(self.proc, self.port, timeout, "haproxy", str(self.log_path))
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def __enter__(self) -> "HAProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
