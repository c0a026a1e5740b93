"""Istio's own control plane in the loop: ``istio-xds serve`` (tests/istio, Istio's config generators
over fake Kubernetes clientsets) translates the manifests a user applies, and a real Envoy started
from ``istio-xds bootstrap`` (Istio's bootstrap template) gets LDS/CDS/RDS/EDS/ECDS from it.

    with IstioControlPlane("1.31", files=[...], extra=["<yaml>"], pod_ips={...}, workdir=tmp) as cp:
        gw = IstioEnvoy(cp, node="gateway", proxy_config=annotation, workdir=tmp).start()
        gw.wait_listener(8080)
        ...
        gw.stop()

What a test changes in a shipped manifest is done here, in the open, by ``for_test`` (the module's
location: a pod path or an OCI URL becomes ``file://`` + the built .wasm); everything else goes to
Istio as the user's file has it.

A gateway listens where Istio puts it: the gateway Service's target ports (8080/8443 in the shipped
Services), on Istio's wildcard address, as in a pod. Those ports are fixed, so ``GATEWAY_PORTS_LOCK``
serialises the gateway Envoys of concurrent test sessions on this machine. The app a gateway routes to
is an echo server at its Pod's IP (a 127.0.0.x address) and target port (SO_REUSEPORT, so it can bind
next to Envoy's wildcard listener on the same port; the kernel prefers the exact address).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterable, Optional

import yaml

from . import envoy as E
from . import manifests, procs
from .upstream import _Handler, _Server

REPO = manifests.REPO
WORK = Path(os.environ.get("CLIENT_IP_ISTIO_WORK", REPO / ".work" / "istio"))
# The pinned Istio releases, newest first (Makefile ISTIO_VERSIONS), and the Envoy each ships.
ISTIO_ENVOY = {"1.31": "1.39.1", "1.30": "1.38.2"}
GATEWAY_PORTS_LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "client-ip-filter-istio-gateway-ports.lock"


def istio_versions() -> list:
    """The releases under test: $CLIENT_IP_ISTIO_VERSIONS (space-separated), else every pinned one."""
    env = os.environ.get("CLIENT_IP_ISTIO_VERSIONS")
    return env.split() if env else list(ISTIO_ENVOY)


def binary(version: str, name: str = "istio-xds") -> Path:
    path = WORK / version / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(f"{path} is not built: run `make istio-xds`")
    return path


def envoy_for(version: str) -> str:
    """The Envoy the Istio release ships, from its venv (make istio-envoys); $CLIENT_IP_ISTIO_ENVOY
    overrides it for every release."""
    if os.environ.get("CLIENT_IP_ISTIO_ENVOY"):
        return os.environ["CLIENT_IP_ISTIO_ENVOY"]
    path = REPO / ".work" / f"envoy-{ISTIO_ENVOY[version]}" / "bin" / "envoy"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make istio-envoys`")
    return str(path)


# -- the manifests as a test applies them ---------------------------------------------------------

WASM_POD_PATH = "/var/local/lib/wasm/client_ip_filter.wasm"


def for_test(text: str, wasm: str) -> str:
    """A shipped manifest as the test applies it: the module comes from the built file. An
    EnvoyFilter's pod path (the ConfigMap mount) becomes the built file's path; a WasmPlugin's
    ``oci://`` URL becomes ``file://`` (Istio hands Envoy a local file, as istio-agent does after a
    pull) and its ``sha256``, the image manifest digest, goes (Istio does not check file:// modules)."""
    text = text.replace(WASM_POD_PATH, wasm)
    text = re.sub(r"url: oci://\S+", f"url: file://{wasm}", text)
    text = re.sub(r'\n\s*sha256: "0{64}"', "", text)
    return text


def documents(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d]


# -- the control plane ----------------------------------------------------------------------------

class IstioControlPlane:
    """One ``istio-xds serve`` process over the given files (each through ``for_test``) and extra
    YAML documents. ``pod_ips`` maps Deployment names to the IPs of the Pods it creates."""

    def __init__(self, version: str, files: Iterable[Path], wasm: str, workdir: Path,
                 extra: Iterable[str] = (), pod_ips: Optional[dict] = None, name: str = "istiod",
                 mesh: Optional[str] = None):
        self.version = version
        self.workdir = Path(workdir)
        self.name = name
        self.config_dir = self.workdir / f"{name}-config"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            (self.config_dir / f"{i:02d}-{Path(f).name}").write_text(for_test(Path(f).read_text(), wasm))
        for j, text in enumerate(extra):
            (self.config_dir / f"9{j:02d}-extra.yaml").write_text(text)
        self.mesh_path = None
        if mesh:
            self.mesh_path = self.workdir / f"{name}-mesh.yaml"
            self.mesh_path.write_text(mesh)
        self.pod_ips = dict(pod_ips or {})
        self.port = procs.free_port()
        self.sds_port = procs.free_port()
        self.log_path = self.workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sds_address(self) -> str:
        return f"127.0.0.1:{self.sds_port}"

    def argv(self) -> list:
        argv = [str(binary(self.version)), "serve", "--istio-version", self.version,
                "--listen", self.address, "--sds-listen", self.sds_address,
                "--config", str(self.config_dir)]
        for dep, ip in self.pod_ips.items():
            argv += ["--pod-ip", f"{dep}={ip}"]
        if self.mesh_path:
            argv += ["--mesh", str(self.mesh_path)]
        return argv

    def start(self, timeout: float = 60.0) -> "IstioControlPlane":
        self.proc = procs.start(self.argv(), log_path=str(self.log_path))

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"istio-xds serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            return "serving ADS" in self.log_text() or None
        procs.wait_until(ready, timeout, what="istio-xds serve to be ready")
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self) -> None:
        procs.stop(self.proc)

    def __enter__(self) -> "IstioControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def dump(version: str, files: Iterable[Path], wasm: str, workdir: Path, node: str = "gateway",
         extra: Iterable[str] = (), pod_ips: Optional[dict] = None, node_args: Iterable[str] = ()) -> dict:
    """``istio-xds dump``: what Istio generates for the node, as JSON (listeners, clusters, routes,
    extension_configs)."""
    cp = IstioControlPlane(version, files, wasm, workdir, extra=extra, pod_ips=pod_ips, name="dump")
    argv = [str(binary(version)), "dump", "--node", node, "--config", str(cp.config_dir), *node_args]
    for dep, ip in cp.pod_ips.items():
        argv += ["--pod-ip", f"{dep}={ip}"]
    procs.note_program(argv[0])
    done = subprocess.run(argv, capture_output=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"istio-xds dump failed:\n{done.stderr.decode(errors='replace')[-4000:]}")
    return json.loads(done.stdout)


# -- an Envoy fed by it ---------------------------------------------------------------------------

class IstioEnvoy:
    """Envoy started from Istio's bootstrap for a gateway pod or a sidecar, fed by ``cp``."""

    def __init__(self, cp: IstioControlPlane, node: str = "gateway", workdir: Optional[Path] = None,
                 proxy_config: Optional[str] = None, labels: Optional[str] = None, ip: str = "127.0.0.1",
                 namespace: Optional[str] = None, name: str = "gateway", envoy: Optional[str] = None,
                 pod_name: Optional[str] = None):
        self.cp = cp
        self.node = node
        self.workdir = Path(workdir or cp.workdir)
        self.name = name
        self.envoy = envoy or envoy_for(cp.version)
        self.admin_port = procs.free_port()
        self.status_port = procs.free_port()
        self.prom_port = procs.free_port()
        self.proxy_config = proxy_config
        self.labels = labels
        self.ip = ip
        self.namespace = namespace
        self.pod_name = pod_name
        self.config_path = self.workdir / f"{name}.bootstrap.json"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None
        self._lock = None

    def bootstrap_argv(self) -> list:
        argv = [str(binary(self.cp.version)), "bootstrap", "--node", self.node,
                "--xds", self.cp.address, "--sds", self.cp.sds_address, "--ip", self.ip,
                "--admin-port", str(self.admin_port), "--status-port", str(self.status_port),
                "--prometheus-port", str(self.prom_port)]
        if self.proxy_config:
            argv += ["--proxy-config", self.proxy_config]
        if self.labels:
            argv += ["--labels", self.labels]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        if self.pod_name:
            argv += ["--name", self.pod_name]
        if self.cp.mesh_path:
            argv += ["--mesh", str(self.cp.mesh_path)]
        return argv

    def start(self, timeout: float = 60.0) -> "IstioEnvoy":
        argv = self.bootstrap_argv()
        procs.note_program(argv[0])
        done = subprocess.run(argv, capture_output=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"istio-xds bootstrap failed:\n{done.stderr.decode(errors='replace')}")
        self.config_path.write_bytes(done.stdout)
        if self.node == "gateway":
            self._lock = open(GATEWAY_PORTS_LOCK, "w")

            def locked():
                try:
                    fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    return None
            procs.wait_until(locked, 300, interval=0.2,
                             what=f"{GATEWAY_PORTS_LOCK} (another gateway Envoy holds ports 8080/8443)")
        self.proc = procs.start([self.envoy, "-c", str(self.config_path), "--concurrency", "1",
                                 "--use-dynamic-base-id", "--log-path", str(self.log_path),
                                 "-l", "info", "--component-log-level", "wasm:debug",
                                 "--file-flush-interval-msec", "50",
                                 "--drain-time-s", "1", "--parent-shutdown-time-s", "2"],
                                log_path=str(self.log_path), cwd=str(self.workdir))
        try:
            procs.wait_until(self._ready, timeout, what=f"{self.name} /ready")
        except Exception:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise E.EnvoyDied(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return self.admin("/ready").strip() == "LIVE"
        except OSError:
            return False

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
            return r.read().decode()

    def config_dump(self) -> dict:
        return json.loads(self.admin("/config_dump"))

    def listener_names(self) -> list:
        out = []
        for c in self.config_dump()["configs"]:
            for l in c.get("dynamic_listeners", []):
                if "active_state" in l:
                    out.append(l["name"])
        return out

    def wait_listener(self, port: int, timeout: float = 30.0) -> None:
        """Wait until Envoy accepts connections on ``port`` (its listener from LDS is active)."""
        procs.wait_until(lambda: procs.port_open("127.0.0.1", port), timeout,
                         what=f"{self.name} listening on {port}")

    def wasm_extension_configs(self) -> list:
        """The Wasm filter configs Envoy has taken from ECDS (a WasmPlugin's)."""
        out = []
        for c in self.config_dump()["configs"]:
            if not c["@type"].endswith("EcdsConfigDump"):
                continue
            for e in c.get("ecds_filters", []):
                tc = e["ecds_filter"].get("typed_config", {})
                if ".wasm.v3.Wasm" in tc.get("@type", ""):
                    out.append(tc["config"])
        return out

    def wait_wasm_extension_config(self, timeout: float = 30.0) -> None:
        """Wait until ECDS delivered the WasmPlugin's filter: until then Istio's default config for it
        (a deny-all RBAC filter, applied without warming) answers 403."""
        procs.wait_until(lambda: self.wasm_extension_configs() or None, timeout,
                         what=f"{self.name}: the WasmPlugin's filter from ECDS")

    def stats(self) -> dict:
        data = json.loads(self.admin("/stats?format=json"))
        out = {}
        for e in data.get("stats", []):
            if "name" in e and "value" in e:
                name = e["name"]
                for prefix in E.WASM_STAT_PREFIXES:
                    if name.startswith(prefix + "client_ip."):
                        name = name[len(prefix):]
                out[name] = e["value"]
        return out

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self) -> None:
        procs.stop(self.proc)
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


# -- the app behind the gateway --------------------------------------------------------------------

class _ReusePortServer(_Server):
    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class PodEcho:
    """An echo server standing in for an app Pod at ``ip:port`` (the Pod IP and the Service's target
    port that Istio's EDS gives the gateway)."""

    def __init__(self, ip: str, port: int):
        import threading
        self.ip, self.port = ip, port
        self._server = _ReusePortServer((ip, port))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "PodEcho":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def requests(self) -> list:
        with self._server.lock:
            return list(self._server.requests)

    def find(self, header: str, value: str) -> list:
        return [r for r in self.requests if [header.lower(), value] in r["headers"]]


_ = _Handler  # the echo handler the PodEcho server uses (harness.upstream)
