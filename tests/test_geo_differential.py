"""docs/geo.md, the differential test: the filter's own table and decisions against MaxMind's
reference reader (PyPI maxminddb) on both real databases of `make geo-data`.

The filter's side is examples/geo_lookup.rs: the file read as an `mmdb` source's body, the table
published into shared data and adopted from it, a policy with a deny list of 20 countries (or 20
AS numbers) bound to it, each address decided. For each address the country (or AS number) must be
what the reference reader's record holds, and the verdict `deny` exactly when that value is in the
deny list. Addresses: random IPv4, random IPv6 in 2000::/3 and anywhere, 6to4 (2002::/16), and the
first and last address of sampled networks of the database with their neighbours. IPv4-mapped IPv6
addresses are left out: the filter looks them up as IPv4 (docs/geo.md), the reference reader under
::ffff:0:0/96 of the tree.

GEO_DIFF_LOOKUPS (default 520,000 per database, so over 1M in all) sets the size;
GEO_DIFF_RECORD=path writes the counts there (make geo-differential records
tests/reliability/results/geo-differential.txt, which RELIABILITY.md quotes)."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness import geo as G
from harness import manifests

# GEO_LOOKUP: another tree's geo_lookup (make geo-compare runs the maxminddb-crate variant's).
LOOKUP = Path(os.environ.get("GEO_LOOKUP") or manifests.REPO / "target" / "release" / "examples" / "geo_lookup")
LOOKUPS = int(os.environ.get("GEO_DIFF_LOOKUPS", "520000"))
DENY_COUNTRIES = ["CN", "RU", "KP", "IR", "BR", "IN", "VN", "ID", "PK", "NG",
                  "UA", "TR", "EG", "BD", "TH", "PH", "MX", "CO", "AR", "ZA"]
DENY_ASNS = [4134, 4837, 9808, 3462, 4766, 9121, 8075, 16509, 15169, 13335,
             14061, 16276, 24940, 45090, 37963, 7922, 701, 3320, 12389, 20940]
# (database, kind, field of the record, deny list)
CASES = [("country.mmdb", "country", "country_code", DENY_COUNTRIES),
         ("asn.mmdb", "asn", "autonomous_system_number", DENY_ASNS)]


def text(x: int, v6: bool) -> str:
    if v6:
        return socket.inet_ntop(socket.AF_INET6, x.to_bytes(16, "big"))
    return socket.inet_ntop(socket.AF_INET, x.to_bytes(4, "big"))


def addresses(name: str, n: int, seed: int) -> list[str]:
    """``n`` addresses: random IPv4, IPv6 (2000::/3, 6to4, anywhere), and for every tenth random
    address the database holds, the first and last address of its network and their neighbours
    (the reference reader's prefix length)."""
    rng = random.Random(seed)
    reader = G.reference(G.real_db(name))
    out: list[str] = []
    while len(out) < n:
        pick = rng.random()
        if pick < 0.55:
            x, v6 = rng.getrandbits(32), False
        elif pick < 0.85:
            x, v6 = 1 << 125 | rng.getrandbits(125), True  # 2000::/3
        elif pick < 0.95:
            x, v6 = 0x2002 << 112 | rng.getrandbits(112), True  # 6to4
        else:
            x, v6 = rng.getrandbits(128), True
        if v6 and x >> 32 == 0xFFFF:
            continue  # IPv4-mapped: see the module's docstring
        a = text(x, v6)
        out.append(a)
        if len(out) % 10 == 0:
            record, length = reader.get_with_prefix_len(a)
            if record is not None:
                width = 128 if v6 else 32
                first = x >> (width - length) << (width - length)
                last = first | ((1 << (width - length)) - 1)
                for y in (first - 1, first, last, last + 1):
                    if 0 <= y < 1 << width and not (v6 and y >> 32 == 0xFFFF):
                        out.append(text(y, v6))
    return out[:n]


def reference_value(record, field: str, kind: str) -> str:
    """What the filter must say of a record, by the contract's rules (docs/geo.md): a country is two
    ASCII letters, upper-cased; an AS number an integer in 1..4294967295; else nothing."""
    value = G.field(record, field) if record is not None else None
    if kind == "country":
        ok = isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha()
        return value.upper() if ok else "-"
    ok = isinstance(value, int) and 1 <= value <= 0xFFFFFFFF
    return str(value) if ok else "-"


def differential(name: str, kind: str, field: str, deny: list, n: int, seed: int,
                 expected_deny: list | None = None) -> dict:
    """Looks ``n`` addresses up in both; ``expected_deny`` (default ``deny``) is the list the
    reference's verdicts are computed from."""
    if not LOOKUP.is_file():
        raise FileNotFoundError(f"{LOOKUP} is missing: run `make geo-lookup`")
    path = G.real_db(name)
    reader = G.reference(path)
    addrs = addresses(name, n, seed)
    started = time.monotonic()
    run = subprocess.run([str(LOOKUP), str(path), kind, ",".join(map(str, deny))],
                         input="\n".join(addrs) + "\n", capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"geo_lookup failed: {run.stdout[:500]} {run.stderr[-2000:]}"
    ours = run.stdout.splitlines()
    assert len(ours) == len(addrs), (len(ours), len(addrs))
    denied = {str(d) for d in (deny if expected_deny is None else expected_deny)}
    counts = {"database": name, "lookups": len(addrs), "ipv4": 0, "ipv6": 0, "known": 0,
              "denied": 0, "disagreements": 0, "examples": []}
    col = 0 if kind == "country" else 1
    for addr, line in zip(addrs, ours):
        value, verdict = line.split(" ")[col], line.split(" ")[2]
        expected = reference_value(reader.get(addr), field, kind)
        want = "deny" if expected in denied else "allow"
        counts["ipv4" if ":" not in addr else "ipv6"] += 1
        counts["known"] += expected != "-"
        counts["denied"] += want == "deny"
        if (value, verdict) != (expected, want):
            counts["disagreements"] += 1
            if len(counts["examples"]) < 10:
                counts["examples"].append(f"{addr}: filter {value} {verdict}, reference {expected} {want}")
    counts["seconds"] = round(time.monotonic() - started, 1)
    counts["parse"] = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
    return counts


def record(results: list[dict]) -> None:
    out = os.environ.get("GEO_DIFF_RECORD")
    if not out:
        return
    head = os.environ.get("GEO_DIFF_HEAD", "")
    lines = [head] if head else []
    for r in results:
        lines.append(f"geo differential: {r['database']}: {r['lookups']} lookups ({r['ipv4']} IPv4, "
                     f"{r['ipv6']} IPv6), {r['known']} known, {r['denied']} denied, "
                     f"{r['disagreements']} disagreements")
        lines.append(f"  {r['parse']}")
    Path(out).write_text("\n".join(lines) + "\n")


def test_the_filters_table_and_decisions_agree_with_the_reference_reader_on_both_real_databases():
    results = [differential(name, kind, field, deny, LOOKUPS, seed=17 + i)
               for i, (name, kind, field, deny) in enumerate(CASES)]
    record(results)
    for r in results:
        assert r["disagreements"] == 0, r["examples"]
        # The test could be false: the addresses reach held ranges and deny-list members.
        assert r["known"] > r["lookups"] // 10 and r["denied"] > 1000, r
    assert sum(r["lookups"] for r in results) >= 1_000_000 or LOOKUPS < 520000


@pytest.mark.parametrize("kind", ["country", "asn"])
def test_the_comparison_counts_a_verdict_the_reference_does_not_expect(kind):
    """The comparison can fail: the filter denying one entry more than the reference expects
    gives disagreements."""
    name, _, field, deny = next(c for c in CASES if c[1] == kind)
    r = differential(name, kind, field, deny[:2], 50000, seed=99, expected_deny=deny[:1])
    assert r["disagreements"] > 0, r
