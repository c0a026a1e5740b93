"""Extensions of the harness's Envoy for the reliability work (the harness files are not edited).

    env = TunedEnvoy(EnvoyOptions(configuration=cfg), upstream_port=up.port, workdir=d,
                     hcm={"max_request_headers_kb": 96})          # HCM fields merged in
    env = TunedEnvoy(..., access_log=False, wasm_log_level="info")  # for load: no per-request I/O
    env = TunedEnvoy(..., flags={"--drain-strategy": "immediate"})  # Envoy command-line flags
    env = TunedEnvoy(..., dynamic=True); env.start()
    env.push_listener(opts)        # file-based LDS: write + atomic rename; returns the outcome
    env.memory()                   # {"rss_kb": ..., "allocated": ..., "heap_size": ...}

    env = EcdsEnvoy(EnvoyOptions(configuration=cfg), ...)  # the wasm filter from a watched ECDS file
    env.push_filter(new_cfg)       # as Istio delivers a WasmPlugin: the listener is not replaced

    up = UpstreamEnvoy(workdir=d).start()   # an app answering 200 from direct_response, echoing the
                                            # client-IP headers it got as x-seen-* response headers
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Optional

import yaml

from harness import procs
from harness.envoy import Envoy, EnvoyOptions, envoy_binary, lds_document, listener

HCM_NAME = "envoy.filters.network.http_connection_manager"


class TunedEnvoy(Envoy):
    """The harness's Envoy with HTTP connection manager overrides, a chosen wasm log level, an
    optional access log, and LDS pushes that report their outcome and timing."""

    def __init__(self, opts: Optional[EnvoyOptions] = None, upstream_port: int = 0,
                 workdir: Optional[str] = None, dynamic: bool = False, name: str = "envoy",
                 hcm: Optional[dict] = None, access_log: bool = True,
                 wasm_log_level: str = "debug", concurrency: int = 1,
                 flags: Optional[dict] = None):
        super().__init__(opts, upstream_port=upstream_port, workdir=workdir, dynamic=dynamic, name=name)
        self.hcm = dict(hcm or {})
        self.access_log = access_log
        self.wasm_log_level = wasm_log_level
        self.concurrency = concurrency
        self.flags = dict(flags or {})  # command-line flags set or replaced, e.g. {"--drain-time-s": "45"}

    # -- configuration ----------------------------------------------------------------------------
    def patch_listener(self, lst: dict) -> dict:
        for chain in lst.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f.get("name") == HCM_NAME:
                    tc = f["typed_config"]
                    tc.update(self.hcm)
                    if not self.access_log:
                        tc.pop("access_log", None)
        return lst

    def write_config(self) -> Path:
        path = super().write_config()  # (dynamic: writes the LDS file through _write_lds below)
        boot = yaml.safe_load(path.read_text())
        for lst in boot.get("static_resources", {}).get("listeners", []) or []:
            self.patch_listener(lst)
        path.write_text(yaml.safe_dump(boot, sort_keys=False))
        return path

    def listener_document(self, opts: EnvoyOptions) -> dict:
        lst = self.patch_listener(listener(opts, self.port, str(self.access_log_path)))
        return lds_document(lst)

    def _write_lds(self, opts: EnvoyOptions) -> None:
        self._write_lds_document(self.listener_document(opts))

    def _write_lds_document(self, doc: dict) -> None:
        self.lds_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.lds_dir / ".lds.yaml.tmp"
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        os.replace(tmp, self.lds_path)  # atomic: the watcher sees a moved-in, complete file

    def argv(self) -> list:
        argv = super().argv()
        argv[argv.index("--concurrency") + 1] = str(self.concurrency)
        argv[argv.index("--component-log-level") + 1] = (f"wasm:{self.wasm_log_level},"
                                                          f"dynamic_modules:{self.wasm_log_level}")
        for flag, value in self.flags.items():
            if flag in argv:
                argv[argv.index(flag) + 1] = str(value)
            else:
                argv += [flag, str(value)]
        return argv

    # -- LDS ----------------------------------------------------------------------------------------
    def push_listener(self, opts: EnvoyOptions, timeout: float = 15.0) -> dict:
        """Push a listener with ``opts`` through the watched file. Returns {"outcome": "accepted" |
        "rejected", "written": t0, "decided": t1} (time.monotonic() values)."""
        return self.push_document(self.listener_document(opts), timeout=timeout)

    def push_document(self, doc: dict, timeout: float = 15.0) -> dict:
        assert self.dynamic, "push_listener needs dynamic=True"
        before = self.stats(raw=True)
        t0 = time.monotonic()
        self._write_lds_document(doc)
        word = self.wait_lds_outcome(before, timeout, interval=0.01)
        return {"outcome": word, "written": t0, "decided": time.monotonic()}

    # -- resources ------------------------------------------------------------------------------------
    def memory(self) -> dict:
        """Envoy's resident set (kB, from /proc) and its allocator's view (admin /memory, bytes)."""
        out: dict = {}
        if self.proc is not None:
            with open(f"/proc/{self.proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        out[line.split(":")[0].lower() + "_kb"] = int(line.split()[1])
        mem = json.loads(self.admin("/memory"))
        for key in ("allocated", "heap_size", "pageheap_unmapped", "pageheap_free", "total_thread_cache"):
            if key in mem:
                out[key] = int(mem[key])
        return out


WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ECDS_STAT = "extension_config_discovery.http_filter.{name}."


class EcdsEnvoy(TunedEnvoy):
    """A TunedEnvoy whose wasm HTTP filter comes from filesystem-based ECDS (extension config
    discovery: ``config_discovery`` on the HTTP filter, a watched file), the way Istio delivers a
    WasmPlugin, instead of inline in the listener. ``push_filter(configuration)`` replaces the file
    (atomic rename) and waits for Envoy's verdict; the listener itself never changes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ecds_path = self.workdir / f"{self.name}-ecds" / "ecds.yaml"
        self.filter_name = self.opts.fragments.wasm_filter["name"]

    def patch_listener(self, lst: dict) -> dict:
        lst = super().patch_listener(lst)
        for chain in lst.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f.get("name") != HCM_NAME:
                    continue
                filters = f["typed_config"]["http_filters"]
                for i, h in enumerate(filters):
                    if h.get("typed_config", {}).get("@type") == WASM_TYPE:
                        filters[i] = {"name": h["name"], "config_discovery": {
                            "config_source": {"resource_api_version": "V3", "path_config_source": {
                                "path": str(self.ecds_path),
                                "watched_directory": {"path": str(self.ecds_path.parent)}}},
                            "type_urls": [WASM_TYPE]}}
        return lst

    def write_config(self) -> Path:
        self._write_ecds(self.opts.configuration)
        return super().write_config()

    def _write_ecds(self, configuration) -> None:
        wasm = self.opts.fragments.wasm_http_filter(self.opts.wasm_path, configuration)
        doc = {"version_info": str(time.time_ns()), "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": wasm["name"], "typed_config": wasm["typed_config"]}]}
        self.ecds_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ecds_path.parent / ".ecds.yaml.tmp"
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        os.replace(tmp, self.ecds_path)

    def push_filter(self, configuration, timeout: float = 15.0) -> dict:
        """Push a new filter configuration through the ECDS file. Returns {"outcome": "accepted" |
        "rejected", "written": t0, "decided": t1} (time.monotonic() values)."""
        prefix = ECDS_STAT.format(name=self.filter_name)
        before = self.stats(raw=True)
        t0 = time.monotonic()
        self._write_ecds(configuration)

        def outcome():
            now = self.stats(raw=True)
            for key, word in (("update_rejected", "rejected"), ("update_success", "accepted")):
                if now.get(prefix + key, 0) > before.get(prefix + key, 0):
                    return word
            return None
        word = procs.wait_until(outcome, timeout, interval=0.01, what="the ECDS update's outcome")
        return {"outcome": word, "written": t0, "decided": time.monotonic()}


class UpstreamEnvoy:
    """The app behind the filter for load tests: an Envoy answering every request itself
    (``direct_response`` 200, body ``ok``), with what the filter told it echoed back in response
    headers: ``x-seen-real-ip``, ``x-seen-client-ip``, ``x-seen-client-port``. Its own stats count
    the requests that reached it (``requests()``)."""

    def __init__(self, workdir: str, name: str = "upstream", concurrency: int = 1):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = procs.free_port()
        self.admin_port = procs.free_port()
        self.concurrency = concurrency
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None

    def bootstrap(self) -> dict:
        seen = [{"header": {"key": f"x-seen-{h}", "value": f"%REQ(x-{h})%"}, "append_action":
                 "OVERWRITE_IF_EXISTS_OR_ADD"} for h in ("real-ip", "client-ip", "client-port")]
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": "app",
            "codec_type": "AUTO",
            "route_config": {"name": "app", "virtual_hosts": [{
                "name": "app", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {
                    "status": 200, "body": {"inline_string": "ok"}},
                    "response_headers_to_add": seen}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        }
        return {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "static_resources": {"listeners": [{
                "name": "app",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.port}},
                "filter_chains": [{"filters": [{"name": HCM_NAME, "typed_config": hcm}]}]}]},
        }

    def start(self, timeout: float = 30.0) -> "UpstreamEnvoy":
        self.config_path.write_text(yaml.safe_dump(self.bootstrap(), sort_keys=False))
        self.proc = procs.start([envoy_binary(), "-c", str(self.config_path), "--concurrency",
                                 str(self.concurrency), "--use-dynamic-base-id", "-l", "warning",
                                 "--log-path", str(self.log_path)], log_path=str(self.log_path))
        procs.wait_listening(self.proc, self.port, timeout, "upstream Envoy", str(self.log_path))
        return self

    def stats(self) -> dict:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats?format=json", timeout=5) as r:
            data = json.loads(r.read())
        return {e["name"]: e["value"] for e in data.get("stats", []) if "name" in e and "value" in e}

    def requests(self) -> int:
        """Requests that reached the app (its downstream_rq_total)."""
        return int(self.stats().get("http.app.downstream_rq_total", 0))

    def stop(self) -> None:
        procs.stop(self.proc)

    def __enter__(self) -> "UpstreamEnvoy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
