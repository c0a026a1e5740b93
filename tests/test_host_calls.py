"""Host calls per request, counted in a real Envoy by the counting builds (`make build-counting`,
cargo feature `count-host-calls`; bench/host_calls.py), for the cases of `make bench`: the figures of
BENCHMARKS.md's "host calls/req" column. And the no-op baseline of case (B) is built as the filter is."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import envoy_bench as B  # noqa: E402
import host_calls as HC  # noqa: E402

COUNT_WASM = os.environ.get("CLIENT_IP_COUNT_WASM", str(REPO / "target/count/client_ip_filter.wasm"))
COUNT_NOOP_WASM = os.environ.get("CLIENT_IP_COUNT_NOOP_WASM", str(REPO / "target/count/noop_filter.wasm"))

# What each bench case costs per request (per connection for N-), by ABI call: the design
# (adapters/proxy-wasm/src/adapter/http.rs, network.rs; bench/noop-filter). A change in the filter's
# host calls shows here first.
# The default: the downstream address, the header lines read once (forward.strip and other spellings
# of the filter's headers; wrk sends none, so nothing is removed), wasm.client_ip, x-real-ip. Before
# forward.strip (issue 20) it was three: no header read.
FOUR = {"get_property": 1, "get_header_map_pairs": 1, "set_property": 1, "replace_header_map_value": 1}
EXPECTED = {
    "B": {},
    "B-calls": FOUR,
    "C": FOUR,
    # the same read serves X-Forwarded-For and :authority (two get_header_map_value before)
    "D": {"get_property": 1, "get_header_map_pairs": 1, "set_property": 1, "replace_header_map_value": 2},
    "E10": FOUR,
    "E10k": FOUR,
    "E100k": FOUR,
    # rate_limit (docs/rate-limits.md): wasm.client_ip_key, and the key header when configured
    "RL-H": {"get_property": 1, "get_header_map_pairs": 1, "set_property": 2, "replace_header_map_value": 2},
    "RL-FS": {"get_property": 1, "get_header_map_pairs": 1, "set_property": 2, "replace_header_map_value": 1},
    "B-fs4": {"get_property": 4},
    "B-inc4": {"increment_metric": 4},
    "B-prop4": {"set_property": 4},
    "B-set4": {"replace_header_map_value": 4},
    "N-B": {},
    # request.protocol (what the new context is), the downstream address; wasm.client_ip
    "N-C": {"get_property": 2, "set_property": 1},
    "N-C10k": {"get_property": 2, "set_property": 1},
    # refused: wasm.client_ip_decision too, and the close
    "N-R10k": {"get_property": 2, "set_property": 2, "close_stream": 1},
}


@pytest.fixture(scope="module")
def counting_builds():
    for path in (COUNT_WASM, COUNT_NOOP_WASM):
        if not os.path.isfile(path):
            pytest.fail(f"{path} is not built: run `make build-counting`", pytrace=False)
    return COUNT_WASM, COUNT_NOOP_WASM


@pytest.fixture(scope="module")
def counted(counting_builds, envoy_bin, tmp_path_factory):
    wasm, noop = counting_builds
    cases = [c for c in B.cases(wasm, noop, {}) if c["name"] in EXPECTED]
    assert {c["name"] for c in cases} == set(EXPECTED)
    return HC.count(envoy_bin, cases, tmp_path_factory.mktemp("host-calls"))


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_host_calls_per_request_of_the_bench_case(counted, case):
    got = counted[case]
    assert got["contexts"] == HC.REQUESTS, got
    assert got["calls"] == EXPECTED[case], got


def test_the_release_wasm_does_not_count(wasm, counting_builds):
    """The counting layer costs the release build nothing: none of it is in the .wasm."""
    assert b"client_ip.host_calls." not in Path(wasm).read_bytes()
    assert b"client_ip.host_calls." in Path(counting_builds[0]).read_bytes()


def test_the_noop_baseline_has_the_filters_release_profile():
    ours = tomllib.loads((REPO / "Cargo.toml").read_text())["profile"]["release"]
    noop = tomllib.loads((REPO / "bench/noop-filter/Cargo.toml").read_text())["profile"]["release"]
    assert noop == ours
    assert '#[path = "../../../adapters/proxy-wasm/src/host.rs"]' in (REPO / "bench/noop-filter/src/lib.rs").read_text()
    assert "proxy_wasm::hostcalls" not in (REPO / "bench/noop-filter/src/lib.rs").read_text()


def test_the_noop_baseline_gets_the_filters_wasm_opt_pass():
    def wasm_opt(target: str) -> list[str]:
        out = subprocess.run(["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True,
                             timeout=60, env={k: v for k, v in os.environ.items() if k != "MAKEFLAGS"})
        assert out.returncode == 0, out.stderr
        return [re.sub(r"\S+\.wasm\S*", "WASM", line) for line in out.stdout.splitlines()
                if line.startswith("wasm-opt ")]
    assert wasm_opt("noop") == wasm_opt("build") != []
