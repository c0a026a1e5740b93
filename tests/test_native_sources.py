"""docs/sources.md in the native build: a source served by a real nginx, fetched by the dynamic module
through Envoy's HTTP callouts from the HTTP filter configuration (main thread), refreshed with a
conditional request (nginx answers 304), and a list server that goes away keeping the last good list,
with the wasm build's counters, gauges and log lines. Draft of branch native-net, to be folded into the
tests parametrised over both builds (tests/test_sources.py, which runs on the native build too with
CLIENT_IP_BUILDS=native): requests are decided with the fetched list, and /stats and the log show what
the sources did."""
from __future__ import annotations

import time

import pytest

from harness import envoy as E
from harness import listserver as L
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange

REFRESH_S = 10
REFRESH_WAIT = REFRESH_S + 4
DROP = ["192.0.2.128/25", "198.51.100.0/26"]
CONFIG = {
    "sources": {"drop": {"cluster": "lists", "authority": "lists.test", "path": "/drop.txt",
                         "refresh_s": REFRESH_S, "timeout_ms": 2000}},
    "access": {"deny": ["source:drop"]},
}


def stat(env, name: str) -> int:
    """A counter or gauge by its contract name, under the dynamic module's metrics namespace."""
    stats = env.stats(raw=True)
    return int(stats.get(name, stats.get("dynamicmodulescustom." + name, 0)))


def module_lines(env, level: str) -> list:
    return [l for l in env.log_text().splitlines() if f"][{level}][dynamic_modules]" in l]


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    if not L.nginx_binary():
        pytest.fail("nginx is not installed: run `make nginx`", pytrace=False)
    root = tmp_path_factory.mktemp("lists")
    L.write_file(root / "drop.txt", L.drop_txt(DROP), time.time() - 100)
    server = L.Nginx(str(root), workdir=str(tmp_path_factory.mktemp("nginx")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def loaded(envoy_factory, native_so, web):
    env = envoy_factory(E.EnvoyOptions(build="native", configuration=CONFIG,
                                       clusters=[L.envoy_cluster("lists", web.port)]))
    env.started_at = time.monotonic()
    procs.wait_until(lambda: stat(env, "client_ip.source.drop.fetch_ok") == 1, 10, what="drop loaded")
    return env


def status(env, echo, src: str) -> int:
    return exchange(env, echo, proxy=pp.v2(src)).status


def test_native_source_is_fetched_once_through_the_callout_and_logged(loaded, web, echo):
    assert web.count("/drop.txt") == 1, web.requests()
    assert stat(loaded, "client_ip.source.drop.entries") == 2
    # Envoy flushes its log file in batches: wait for the line before counting it.
    lines = procs.wait_until(lambda: [l for l in module_lines(loaded, "info")
                                      if "source drop: loaded with 2 entries" in l] or None,
                             5, what="the load logged at info")
    assert len(lines) == 1, module_lines(loaded, "info")
    assert status(loaded, echo, "192.0.2.129") == 403
    assert status(loaded, echo, "198.51.100.63") == 403
    assert status(loaded, echo, "198.51.100.64") == 200


def test_native_refresh_is_conditional_and_304_keeps_the_list(loaded, web):
    deadline = loaded.started_at + REFRESH_WAIT + 2
    procs.wait_until(lambda: web.count("/drop.txt") == 2, max(1.0, deadline - time.monotonic()),
                     interval=0.2, what="the first refresh")
    assert web.count("/drop.txt", 304) == 1, web.requests()
    procs.wait_until(lambda: stat(loaded, "client_ip.source.drop.not_modified") == 1, 3,
                     what="not_modified counted")
    assert stat(loaded, "client_ip.source.drop.fetch_ok") == 1
    assert stat(loaded, "client_ip.source.drop.entries") == 2


def test_native_failing_list_server_keeps_the_last_good_list(loaded, web, echo):
    web.stop()
    procs.wait_until(lambda: stat(loaded, "client_ip.source.drop.fetch_failed") >= 1,
                     REFRESH_WAIT + 2, interval=0.2, what="a failed fetch counted")
    assert stat(loaded, "client_ip.source.drop.entries") == 2
    warnings = procs.wait_until(lambda: [l for l in module_lines(loaded, "warning")
                                         if "source drop" in l] or None,
                                5, what="the failed fetch's warning in the log")
    assert "keeping the last good list" in warnings[0], warnings
    assert status(loaded, echo, "192.0.2.129") == 403
    assert status(loaded, echo, "198.51.100.64") == 200
