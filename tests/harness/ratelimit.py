"""The global rate limit's parts for the tests (docs/rate-limits.md): Debian's ``redis-server`` and the
rate limit service (github.com/envoyproxy/ratelimit, built by ``make ratelimit-service`` into
``.work/ratelimit``), each on free loopback ports in its own process group, stopped by group id.

The service's limits are the ``config.yaml`` of istio-examples/ratelimit-service.yaml's ConfigMap
(one source of truth), with ``requests_per_unit`` and ``unit`` replaced when a test asks.

    with Redis(workdir) as redis, RateLimitService(workdir, redis, requests_per_unit=10, unit="hour") as rls:
        cluster = rls.envoy_cluster("client-ip-ratelimit")   # a static cluster for EnvoyOptions.clusters
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Optional

import yaml

from . import manifests, procs

SERVICE_MANIFEST = manifests.REPO / "istio-examples" / "ratelimit-service.yaml"
DEFAULT_BINARY = manifests.REPO / ".work" / "ratelimit"


def service_binary() -> str:
    return os.environ.get("CLIENT_IP_RATELIMIT", str(DEFAULT_BINARY))


def shipped_config() -> dict:
    """The service's config.yaml as istio-examples/ratelimit-service.yaml ships it."""
    with open(SERVICE_MANIFEST) as fh:
        for doc in yaml.safe_load_all(fh):
            if doc and doc.get("kind") == "ConfigMap":
                return yaml.safe_load(doc["data"]["config.yaml"])
    raise LookupError(f"{SERVICE_MANIFEST}: no ConfigMap with config.yaml")


class Redis:
    """``redis-server`` on a free loopback port, no persistence."""

    def __init__(self, workdir: str, name: str = "redis"):
        self.workdir = Path(workdir)
        self.port = procs.free_port()
        self.log_path = self.workdir / f"{name}.log"
        self.proc = None

    def start(self, timeout: float = 10.0) -> "Redis":
        self.proc = procs.start(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                                 "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
                                log_path=str(self.log_path))
        procs.wait_listening(self.proc, self.port, timeout, "redis-server", str(self.log_path))
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def __enter__(self) -> "Redis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RateLimitService:
    """The rate limit service on free loopback ports (gRPC, HTTP, debug), its limits from the shipped
    ConfigMap with ``requests_per_unit``/``unit`` replaced when given."""

    def __init__(self, workdir: str, redis: Redis, requests_per_unit: Optional[int] = None,
                 unit: Optional[str] = None, name: str = "ratelimit"):
        self.workdir = Path(workdir)
        self.redis = redis
        self.grpc_port = procs.free_port()
        self.http_port = procs.free_port()
        self.debug_port = procs.free_port()
        self.log_path = self.workdir / f"{name}.log"
        self.runtime = self.workdir / f"{name}-runtime"
        config = copy.deepcopy(shipped_config())
        for descriptor in config["descriptors"]:
            if requests_per_unit is not None:
                descriptor["rate_limit"]["requests_per_unit"] = requests_per_unit
            if unit is not None:
                descriptor["rate_limit"]["unit"] = unit
        self.config = config
        self.proc = None

    def start(self, timeout: float = 20.0) -> "RateLimitService":
        config_dir = self.runtime / "ratelimit" / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        binary = service_binary()
        if not os.path.isfile(binary):
            raise FileNotFoundError(f"the rate limit service is not built at {binary}: run `make ratelimit-service`")
        env = {
            "HOST": "127.0.0.1", "PORT": str(self.http_port),
            "GRPC_HOST": "127.0.0.1", "GRPC_PORT": str(self.grpc_port),
            "DEBUG_HOST": "127.0.0.1", "DEBUG_PORT": str(self.debug_port),
            "REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": f"127.0.0.1:{self.redis.port}",
            "USE_STATSD": "false", "LOG_LEVEL": "debug",
            "RUNTIME_ROOT": str(self.runtime), "RUNTIME_SUBDIRECTORY": "ratelimit",
            "RUNTIME_WATCH_ROOT": "false",
        }
        self.proc = procs.start([binary], log_path=str(self.log_path), env=env)
        procs.wait_listening(self.proc, self.grpc_port, timeout, "the rate limit service", str(self.log_path))
        return self

    def envoy_cluster(self, name: str) -> dict:
        """A static HTTP/2 cluster ``name`` pointing at the service's gRPC port."""
        return {
            "name": name, "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.grpc_port}}}}]}]},
        }

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        procs.stop(self.proc)

    def __enter__(self) -> "RateLimitService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
