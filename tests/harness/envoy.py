"""Envoy under test: bootstrap builder, process lifetime, admin stats, access log, refused configs.

The listener is built from the manifests' fragments (see ``manifests``)::

    [proxy_protocol]              listener filter (LISTENER_FILTER patch), optional
    [set_filter_state]            network filter  (NETWORK_FILTER patch), optional
    http_connection_manager       use_remote_address / xff_num_trusted_hops as asked,
        [client-ip-filter wasm]   HTTP filter     (HTTP_FILTER patch, filename + configuration replaced;
                                  for the native build native/envoy.yaml's dynamic-module block with
                                  the same configuration, EnvoyOptions.build)
        router                    -> cluster "echo" (the test's EchoServer)

and an access log (JSON lines, one per request) with the downstream addresses, the three filter-state
values the filter writes, and the response. Send ``x-test-id`` to find a request's line.

    env = Envoy(EnvoyOptions(configuration={...}), upstream_port=echo.port, workdir=tmp)
    env.start()                # waits for /ready; raises with the log tail when Envoy dies
    env.stats()                # {"client_ip.allowed": 3, ...}: counters and gauges
    env.counter("client_ip.denied")
    env.access_log_entry("t1") # the JSON line of the request that sent x-test-id: t1
    env.stop()

``run_refused(options, ...)`` starts Envoy with a configuration expected to be refused and returns
``Refused(exit_status, log_text)``; ``exit_status`` is None when Envoy started anyway.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from . import manifests, procs

HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
FILE_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"

# Prefixes Envoy may put in front of the filter's metric names in /stats; stats() strips them so tests
# always see the names of the behaviour contract (client_ip.allowed, ...): proxy-wasm's, and the
# dynamic module's default metrics namespace (DynamicModuleConfig.metrics_namespace,
# "dynamicmodulescustom").
WASM_STAT_PREFIXES = ("wasmcustom.", "wasm.")
NATIVE_STAT_PREFIXES = ("dynamicmodulescustom.",)
STAT_PREFIXES = WASM_STAT_PREFIXES + NATIVE_STAT_PREFIXES

# The Envoy log component each build's own log lines carry: proxy-wasm's "[wasm]" (with "wasm log
# <vm>: " before the message), the dynamic module's "[dynamic_modules]".
LOG_COMPONENT = {"wasm": "wasm", "native": "dynamic_modules"}


def envoy_binary() -> str:
    path = os.environ.get("CLIENT_IP_ENVOY")
    if path:
        return path
    return str(manifests.REPO / ".venv" / "bin" / "envoy")


# How often the filter flushes the counts it makes in the VM (src/tally.rs FLUSH_PERIOD_MS), in s.
FLUSH_S = 0.25


@dataclass
class EnvoyOptions:
    """What differs between the Envoys of the tests. None means "as the manifest has it"."""
    fragments: manifests.Fragments = field(default_factory=manifests.gateway)
    proxy_protocol: Optional[bool] = None          # include the proxy_protocol listener filter
    allow_requests_without_proxy_protocol: bool = False
    set_filter_state: Optional[bool] = None        # include the set_filter_state network filter
    wasm: bool = True                              # include the client-ip-filter HTTP filter
    build: Optional[str] = None                    # "wasm" or "native" (None: wasm; the envoy_factory
                                                   # of a both_builds module fills in its build)
    configuration: manifests.Configuration = None  # None: the manifest's; dict or raw JSON text
    wasm_path: Optional[str] = None                # default $CLIENT_IP_WASM
    use_remote_address: Optional[bool] = None      # None: true for GATEWAY, false otherwise (Istio)
    xff_num_trusted_hops: int = 0
    accept_http_10: bool = False
    skip_xff_append: bool = False
    listen_address: str = "127.0.0.1"              # or "::1" for a real IPv6 TCP peer
    normalize_path: Optional[bool] = None          # HCM normalize_path (Istio's default BASE: true)
    merge_slashes: Optional[bool] = None
    concurrency: int = 1                           # Envoy's worker threads
    filter_state_key: Optional[str] = None         # set_filter_state's object_key (None: the manifest's)
    clusters: list = field(default_factory=list)   # extra static clusters (list servers)
    # the manifest's other HTTP filters (a rate limiter) replaced by name with these values
    http_filter_overrides: dict = field(default_factory=dict)
    http_filters_before: list = field(default_factory=list)  # HTTP filters ahead of all others

    def resolved_build(self) -> str:
        return self.build or "wasm"

    def resolved_use_remote_address(self) -> bool:
        if self.use_remote_address is not None:
            return self.use_remote_address
        return self.fragments.context == "GATEWAY"


ACCESS_LOG_FORMAT = {
    "test_id": "%REQ(X-TEST-ID)%",
    "downstream_remote": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "downstream_direct": "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%",
    # the set_filter_state object (key filled in from the manifest) and the filter's three values
    "downstream_fs": "%FILTER_STATE({key}:PLAIN)%",
    "client_ip": "%FILTER_STATE(wasm.client_ip:PLAIN)%",
    "decision": "%FILTER_STATE(wasm.client_ip_decision:PLAIN)%",
    "rule": "%FILTER_STATE(wasm.client_ip_rule:PLAIN)%",
    "client_ip_key": "%FILTER_STATE(wasm.client_ip_key:PLAIN)%",
    "client_link": "%FILTER_STATE(wasm.client_link:PLAIN)%",
    "client_ip_lists": "%FILTER_STATE(wasm.client_ip_lists:PLAIN)%",
    "client_country": "%FILTER_STATE(wasm.client_country:PLAIN)%",
    "client_asn": "%FILTER_STATE(wasm.client_asn:PLAIN)%",
    "status": "%RESPONSE_CODE%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "flags": "%RESPONSE_FLAGS%",
    "upstream_host": "%UPSTREAM_HOST%",
    "method": "%REQ(:METHOD)%",
    "authority": "%REQ(:AUTHORITY)%",
    "path": "%REQ(:PATH)%",
    "xff": "%REQ(X-FORWARDED-FOR)%",
    "protocol": "%PROTOCOL%",
}


def listener(opts: EnvoyOptions, port: int, access_log_path: str, name: str = "ingress") -> dict:
    """The test listener on 127.0.0.1:``port``, from the manifest fragments."""
    frags = opts.fragments
    listener_filters = []
    want_pp = opts.proxy_protocol if opts.proxy_protocol is not None else frags.proxy_protocol is not None
    if want_pp:
        pp = frags.proxy_protocol or manifests.gateway().proxy_protocol
        if pp is None:
            raise LookupError("no proxy_protocol listener filter in the manifests")
        if opts.allow_requests_without_proxy_protocol:
            pp["typed_config"]["allow_requests_without_proxy_protocol"] = True
        listener_filters.append(pp)

    network_filters = []
    want_sfs = opts.set_filter_state if opts.set_filter_state is not None else frags.set_filter_state is not None
    if want_sfs:
        sfs = frags.set_filter_state or manifests.gateway().set_filter_state
        if opts.filter_state_key:
            sfs["typed_config"]["on_new_connection"][0]["object_key"] = opts.filter_state_key
        network_filters.append(sfs)

    try:
        fs_key = frags.downstream_filter_state_key
    except LookupError:
        fs_key = "client_ip.downstream_address"
    fs_key = opts.filter_state_key or fs_key
    log_format = {k: v.replace("{key}", fs_key) for k, v in ACCESS_LOG_FORMAT.items()}

    # The manifest's HTTP filters in its order (the wasm filter, then e.g. a rate limiter), the
    # wasm one with this test's module and configuration; an option may replace another filter.
    http_filters = list(opts.http_filters_before)
    for f in frags.http_filters:
        if f.get("typed_config", {}).get("@type") == manifests.WASM_TYPE:
            if opts.wasm:
                http_filters.append(filter_block(frags.wasm_http_filter(opts.wasm_path, opts.configuration),
                                                 opts))
        else:
            http_filters.append(copy.deepcopy(opts.http_filter_overrides.get(f["name"], f)))
    http_filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}})

    hcm: dict[str, Any] = {
        "@type": HCM_TYPE,
        "stat_prefix": "ingress_http",
        "codec_type": "AUTO",
        "use_remote_address": opts.resolved_use_remote_address(),
        "xff_num_trusted_hops": opts.xff_num_trusted_hops,
        "skip_xff_append": opts.skip_xff_append,
        "access_log": [{
            "name": "envoy.access_loggers.file",
            "typed_config": {"@type": FILE_LOG_TYPE, "path": access_log_path,
                             "log_format": {"json_format": log_format}},
        }],
        "route_config": {
            "name": "local",
            "virtual_hosts": [{"name": "all", "domains": ["*"],
                               "routes": [{"match": {"prefix": "/"},
                                           "route": {"cluster": "echo", "timeout": "5s"}}]}],
        },
        "http_filters": http_filters,
    }
    if opts.normalize_path is not None:
        hcm["normalize_path"] = opts.normalize_path
    if opts.merge_slashes is not None:
        hcm["merge_slashes"] = opts.merge_slashes
    if opts.accept_http_10:
        hcm["http_protocol_options"] = {"accept_http_10": True}
    network_filters.append({"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm})

    out: dict[str, Any] = {
        "name": name,
        "address": {"socket_address": {"address": opts.listen_address, "port_value": port}},
        "filter_chains": [{"filters": network_filters}],
    }
    if listener_filters:
        out["listener_filters"] = listener_filters
    return out


def filter_block(wasm_block: dict, opts: EnvoyOptions) -> dict:
    """``wasm_block`` (the filter as the wasm build loads it) for ``opts``'s build: unchanged for
    wasm, the dynamic-module block with the same configuration for native."""
    if opts.resolved_build() == "native":
        return manifests.native_http_filter(wasm_block)
    return wasm_block


def filter_log_lines(text: str, build: str, level: Optional[str] = None) -> list:
    """The lines of an Envoy log ``text`` that the filter of ``build`` wrote (at ``level``, e.g.
    "warning", or any): proxy-wasm's carry "[wasm]" and "wasm log", the module's "[dynamic_modules]"."""
    comp = LOG_COMPONENT[build]
    out = []
    for line in text.splitlines():
        tag = f"][{level}][{comp}]" if level else f"][{comp}]"
        if tag not in line:
            continue
        if build == "wasm" and "wasm log" not in line:
            continue
        out.append(line)
    return out


def bootstrap(opts: EnvoyOptions, port: int, admin_port: int, upstream_port: int,
              access_log_path: str, lds_path: Optional[str] = None) -> dict:
    """A complete bootstrap. With ``lds_path`` the listener comes from that file (file-based LDS,
    so a test can push an update); otherwise it is static."""
    boot: dict[str, Any] = {
        "node": {"id": "client-ip-test", "cluster": "client-ip-test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "clusters": [{
                "name": "echo",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "echo", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                "port_value": upstream_port}}}}]}]},
            }],
        },
    }
    boot["static_resources"]["clusters"].extend(copy.deepcopy(opts.clusters))
    lst = listener(opts, port, access_log_path)
    if lds_path:
        boot["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3", "path_config_source": {
            "path": lds_path, "watched_directory": {"path": os.path.dirname(lds_path)}}}}
    else:
        boot["static_resources"]["listeners"] = [lst]
    return boot


def lds_document(lst: dict) -> dict:
    return {"version_info": str(time.time_ns()), "resources": [
        dict({"@type": "type.googleapis.com/envoy.config.listener.v3.Listener"}, **lst)]}


class EnvoyDied(RuntimeError):
    pass


class Envoy:
    """One Envoy process (``--concurrency`` from the options, 1 by default; dynamic base id, wasm
    logging at debug)."""

    def __init__(self, opts: Optional[EnvoyOptions] = None, upstream_port: int = 0,
                 workdir: Optional[str] = None, dynamic: bool = False, name: str = "envoy"):
        self.opts = opts or EnvoyOptions()
        self.upstream_port = upstream_port
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="client-ip-envoy-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.listen_address = self.opts.listen_address
        self.port = procs.free_port(self.listen_address)
        self.admin_port = procs.free_port()
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.access_log_path = self.workdir / f"{name}.access.jsonl"
        self.dynamic = dynamic
        self.lds_dir = self.workdir / f"{name}-lds"
        self.lds_path = self.lds_dir / "lds.yaml"
        self.proc: Optional[subprocess.Popen] = None

    # -- lifetime --------------------------------------------------------------------------------
    def write_config(self) -> Path:
        if self.dynamic:
            self.lds_dir.mkdir(parents=True, exist_ok=True)
            self._write_lds(self.opts)
        boot = bootstrap(self.opts, self.port, self.admin_port, self.upstream_port,
                         str(self.access_log_path), str(self.lds_path) if self.dynamic else None)
        self.config_path.write_text(yaml.safe_dump(boot, sort_keys=False))
        return self.config_path

    def argv(self) -> list:
        return [envoy_binary(), "-c", str(self.config_path), "--concurrency", str(self.opts.concurrency),
                "--use-dynamic-base-id", "--log-path", str(self.log_path),
                "-l", "info", "--component-log-level", "wasm:debug,dynamic_modules:debug",
                "--file-flush-interval-msec", "50",
                "--drain-time-s", "1", "--parent-shutdown-time-s", "2"]

    def start(self, timeout: float = 30.0) -> "Envoy":
        self.write_config()
        self.log_path.touch()
        self.access_log_path.touch()
        self.proc = procs.start(self.argv(), log_path=str(self.log_path))
        try:
            procs.wait_until(self._ready, timeout, what=f"{self.name} /ready")
        except Exception:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise EnvoyDied(f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                            + self.log_tail())
        try:
            return self.admin("/ready").strip() == "LIVE" and procs.port_open(self.listen_address, self.port)
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def stop(self) -> Optional[int]:
        rc = procs.stop(self.proc)
        return rc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "Envoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- dynamic listener (file-based LDS) --------------------------------------------------------
    def _write_lds(self, opts: EnvoyOptions) -> None:
        if opts.build is None:  # an update keeps the running Envoy's build
            opts = copy_options(opts, build=self.opts.build)
        lst = listener(opts, self.port, str(self.access_log_path))
        tmp = self.lds_dir / ".lds.yaml.tmp"
        tmp.write_text(yaml.safe_dump(lds_document(lst), sort_keys=False))
        os.replace(tmp, self.lds_path)  # atomic: Envoy's watcher sees a moved-in file

    def update_listener(self, opts: EnvoyOptions, timeout: float = 15.0) -> str:
        """Push a new listener through LDS; wait until Envoy accepted or rejected it and return
        "accepted" or "rejected"."""
        assert self.dynamic, "update_listener needs Envoy(dynamic=True)"
        before = self.stats(raw=True)
        self._write_lds(opts)
        return self.wait_lds_outcome(before, timeout)

    def wait_lds_outcome(self, before: dict, timeout: float, interval: float = 0.05) -> str:
        """Wait until Envoy's LDS counters moved past ``before`` (a raw ``stats()`` snapshot taken
        before the push): "accepted" or "rejected"."""
        def outcome():
            now = self.stats(raw=True)
            for key, word in (("listener_manager.lds.update_rejected", "rejected"),
                              ("listener_manager.lds.update_success", "accepted")):
                if now.get(key, 0) > before.get(key, 0):
                    return word
            return None
        return procs.wait_until(outcome, timeout, interval=interval, what="the LDS update's outcome")

    # -- admin -----------------------------------------------------------------------------------
    def admin(self, path: str, method: str = "GET") -> str:
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.read().decode()

    def stats(self, raw: bool = False) -> dict:
        """Counters and gauges as {name: value}. Unless ``raw``, proxy-wasm metric names are shown
        without the prefix Envoy adds (WASM_STAT_PREFIXES), i.e. as the behaviour contract names them."""
        data = json.loads(self.admin("/stats?format=json"))
        out: dict = {}
        for entry in data.get("stats", []):
            if "name" in entry and "value" in entry:
                out[entry["name"]] = entry["value"]
        if raw:
            return out
        for name, value in list(out.items()):
            for prefix in STAT_PREFIXES:
                if name.startswith(prefix + "client_ip."):
                    out.setdefault(name[len(prefix):], value)
        return out

    def settled_stats(self, prefix: str = "client_ip.") -> dict:
        """A ``stats()`` snapshot with no count of earlier requests still waiting in the filter: the
        filter flushes its counts every 250 ms (FLUSH_S), so two reads FLUSH_S apart that agree on
        the ``prefix`` counters mean nothing was pending at the first. The "before" of a
        ``counter_delta``: otherwise an earlier test's count, flushed late, lands in this test's delta."""
        def ours(stats: dict) -> dict:
            return {k: v for k, v in stats.items() if k.startswith(prefix)}
        first = self.stats()
        deadline = time.monotonic() + 10 * FLUSH_S
        while True:
            time.sleep(FLUSH_S + 0.05)
            second = self.stats()
            if ours(second) == ours(first) or time.monotonic() >= deadline:
                return second
            first = second

    def counter(self, name: str) -> int:
        """One counter by its contract name (0 while Envoy has not created it)."""
        return int(self.stats().get(name, 0))

    def counters(self, prefix: str = "client_ip.") -> dict:
        return {k: v for k, v in self.stats().items() if k.startswith(prefix)}

    # -- logs ------------------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def build(self) -> str:
        return self.opts.resolved_build()

    def tag(self, level: str) -> str:
        """The level and component tag of the filter's log lines, e.g. "][warning][wasm]"."""
        return f"][{level}][{LOG_COMPONENT[self.build]}]"

    def filter_lines(self, level: Optional[str] = None, text: Optional[str] = None) -> list:
        """The log lines the filter wrote (``filter_log_lines``), of the whole log or of ``text``."""
        return filter_log_lines(self.log_text() if text is None else text, self.build, level)

    def access_log_lines(self) -> list:
        """Every access-log entry so far, parsed (dicts with the ACCESS_LOG_FORMAT keys)."""
        try:
            text = self.access_log_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def access_log_entry(self, test_id: str, timeout: float = 5.0) -> dict:
        """The access-log entry of the request that sent ``x-test-id: test_id`` (waits for the flush)."""
        def find():
            hits = [e for e in self.access_log_lines() if e.get("test_id") == test_id]
            if len(hits) > 1:
                raise AssertionError(f"{len(hits)} access-log lines for x-test-id {test_id}")
            return hits[0] if hits else None
        return procs.wait_until(find, timeout, what=f"access-log line for x-test-id {test_id}")

    def wait_log(self, needle: str, timeout: float = 5.0) -> str:
        """Wait until the Envoy log contains ``needle``; return the first line containing it."""
        def find():
            for line in self.log_text().splitlines():
                if needle in line:
                    return line
            return None
        return procs.wait_until(find, timeout, what=f"{needle!r} in the Envoy log")


@dataclass
class Refused:
    exit_status: Optional[int]  # None: Envoy started (did not refuse)
    log: str
    build: str = "wasm"

    def filter_lines(self, level: Optional[str] = None) -> list:
        """The log lines the filter wrote (``filter_log_lines``)."""
        return filter_log_lines(self.log, self.build, level)


def run_refused(opts: EnvoyOptions, workdir: Optional[str] = None, upstream_port: int = 9,
                timeout: float = 30.0, name: str = "refused") -> Refused:
    """Start Envoy with ``opts`` expecting it to refuse the configuration. Returns its exit status and
    full log; when Envoy becomes ready instead, it is stopped and ``exit_status`` is None."""
    env = Envoy(opts, upstream_port=upstream_port, workdir=workdir, name=name)
    env.write_config()
    env.log_path.touch()
    env.proc = procs.start(env.argv(), log_path=str(env.log_path))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            rc = env.proc.poll()
            if rc is not None:
                return Refused(rc, env.log_text(), env.build)
            try:
                if env.admin("/ready").strip() == "LIVE":
                    return Refused(None, env.log_text(), env.build)
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"Envoy neither exited nor became ready in {timeout}s:\n{env.log_tail()}")
    finally:
        env.stop()


def copy_options(opts: EnvoyOptions, **changes) -> EnvoyOptions:
    """A copy of ``opts`` with ``changes`` applied (fragments shared, configuration deep-copied)."""
    new = copy.copy(opts)
    for k, v in changes.items():
        setattr(new, k, v)
    return new


def counter_delta(env: Envoy, before: dict, expected: Optional[dict] = None, timeout: float = 3.0,
                  prefix: str = "client_ip.") -> dict:
    """The ``prefix`` counters that changed since ``before`` (a ``stats()`` snapshot), as
    {name: increase}. With ``expected``, polls up to ``timeout`` s for the delta to equal it (the
    filter counts in the VM and flushes every second, all of a VM's counts at once) and returns
    whatever it is then. Without ``expected`` it reads once: only for "nothing changed" checks made
    after a flush was seen."""
    def diff():
        now = env.stats()
        return {k: v - before.get(k, 0) for k, v in now.items()
                if k.startswith(prefix) and isinstance(v, int) and v != before.get(k, 0)}
    if expected is None:
        return diff()
    deadline = time.monotonic() + timeout
    while True:
        d = diff()
        if d == expected or time.monotonic() >= deadline:
            return d
        time.sleep(0.05)
