"""Another module on the same proxy writes our shared-data keys (docs/sources.md, "What another
module can do"): a second proxy-wasm module of our own (tests/hostile-module, built by
``make hostile-module``), loaded into the same Envoy and the same shared-data namespace (vm_id),
overwrites the filter's table, status, lease and idle keys every 50 ms with a /0 table in the
filter's own layout (valid checksum), a status whose version is u64::MAX, a lease held until the
end of time, and garbage. None of it may change a decision, and lists must still refresh."""

import copy
import json
import os
import struct
import time
from pathlib import Path

import pytest

from harness import envoy as E
from harness import listserver as L
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange

M64 = (1 << 64) - 1


def hostile_wasm() -> str:
    path = os.environ.get("CLIENT_IP_HOSTILE_WASM") or str(
        Path(__file__).resolve().parent.parent
        / "target/hostile-module/wasm32-wasip1/release/hostile_module.wasm")
    if not Path(path).is_file():
        pytest.fail(f"the hostile test module is not built at {path}: run `make hostile-module`",
                    pytrace=False)
    return path


def fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & M64
    return h


def table_checksum(data: bytes) -> int:
    """The table layout's checksum (an accident detector, not a seal), as the filter computes it."""
    h = (0xcbf29ce484222325 ^ len(data)) & M64
    whole = len(data) // 8 * 8
    for i in range(0, whole, 8):
        h = ((h ^ int.from_bytes(data[i:i + 8], "little")) * 0x100000001b3) & M64
        h = ((h << 29) | (h >> 35)) & M64
    for b in data[whole:]:
        h = ((h ^ b) * 0x100000001b3) & M64
    return h


def everything_table() -> bytes:
    """A table holding 0.0.0.0/0 (one IPv4 range 0-0xffffffff), version u64::MAX, in the layout."""
    body = b"CIPT" + bytes([1, 0, 0, 0]) + struct.pack("<QQ", M64, 1)
    body += struct.pack("<II", 0, 0) + struct.pack("<II", 1, 0) + struct.pack("<II", 0, 0xFFFFFFFF)
    return body + struct.pack("<Q", table_checksum(body))


def hostile_writes(config_text: str, source: str) -> str:
    prefix = f"client_ip_filter.sources.{fnv1a64(config_text.encode()):016x}."
    now_ms = int(time.time() * 1000)
    writes = {
        f"{prefix}{source}.table": everything_table(),
        f"{prefix}{source}.status": struct.pack("<QQQ", M64, now_ms + 10**9, 1),
        f"{prefix}lease": struct.pack("<QQ", 42, M64),
        f"{prefix}idle": b"\xff" * 24,
    }
    return "tick_ms 50\n" + "".join(f"{k} {v.hex()}\n" for k, v in writes.items())


def hostile_filter(ours: dict, wasm_path: str, configuration: str) -> dict:
    """A wasm HTTP filter running the hostile module in our filter's vm_id (one shared-data
    namespace, as every WasmPlugin has in Istio)."""
    f = copy.deepcopy(ours)
    f["name"] = "hostile"
    cfg = f["typed_config"]["config"]
    cfg["name"] = "hostile"
    cfg["root_id"] = "hostile"
    cfg["vm_config"]["code"]["local"]["filename"] = wasm_path
    cfg["configuration"]["value"] = configuration
    return f


def writes(env) -> int:
    """The hostile module's writes so far (Envoy prefixes a wasm module's counter names)."""
    return sum(v for k, v in env.stats(raw=True).items() if k.endswith("hostile.writes"))


def status(env, echo, src):
    return exchange(env, echo, proxy=pp.v2(src), path="/").status


def on_every_worker(env, echo, src, want, n=10):
    """``n`` requests in a row from ``src`` got ``want`` (new connections spread over the workers,
    each of which adopts a list on its own tick)."""
    return all(status(env, echo, src) == want for _ in range(n))


@pytest.fixture(scope="module")
def lists():
    server = L.FaultServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def attacked(envoy_factory, wasm, lists, echo, gateway_fragments):
    lists.set("/feed.txt", "ok", b"192.0.2.66\n")
    config = {"sources": {"feed": {"cluster": "lists", "authority": "lists.test", "path": "/feed.txt",
                                   "refresh_s": 10, "timeout_ms": 2000}},
              "access": {"deny": ["source:feed"]}}
    text = json.dumps(config)
    ours = gateway_fragments.wasm_http_filter(wasm, text)
    env = envoy_factory(E.EnvoyOptions(
        configuration=text, concurrency=2, clusters=[L.envoy_cluster("lists", lists.port)],
        http_filters_before=[hostile_filter(ours, hostile_wasm(), hostile_writes(text, "feed"))]))
    return env


def test_the_hostile_module_runs_and_writes_our_keys(attacked):
    procs.wait_until(lambda: writes(attacked) >= 100, 10,
                     what="the hostile module's writes")


def test_a_forged_table_status_and_lease_change_no_decision(attacked, echo):
    # The list loads (after the VMs give up on the forged lease and fetch themselves).
    procs.wait_until(lambda: on_every_worker(attacked, echo, "192.0.2.66", 403), 40, interval=0.2,
                     what="the list server's list in force")
    # The /0 table with version u64::MAX was never adopted: other clients still pass.
    for _ in range(20):
        assert status(attacked, echo, "198.51.100.1") == 200
        assert status(attacked, echo, "192.0.2.66") == 403
    attacked.wait_log("does not carry this configuration's seal")
    attacked.wait_log("this VM fetches its lists itself")


def test_lists_still_refresh_under_attack(attacked, echo, lists):
    procs.wait_until(lambda: on_every_worker(attacked, echo, "192.0.2.66", 403), 40, interval=0.2,
                     what="the first list")
    lists.set("/feed.txt", "ok", b"192.0.2.77\n")
    procs.wait_until(lambda: on_every_worker(attacked, echo, "192.0.2.77", 403)
                     and on_every_worker(attacked, echo, "192.0.2.66", 200), 30, interval=0.2,
                     what="the refreshed list in force")
    assert writes(attacked) >= 100
    assert status(attacked, echo, "198.51.100.1") == 200
