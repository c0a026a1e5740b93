#!/usr/bin/env python3
"""Writes the hand-made seeds of the committed corpus (fuzz/corpus/<target>/seed-*), named by the
sha1 of their content like libFuzzer's own files. Run from anywhere; idempotent. Inputs libFuzzer
found and `make fuzz` merged in sit beside them under their plain sha1 names."""
import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

ENTRIES = [
    "203.0.113.7", "203.0.113.7:8443", " \t203.0.113.7 ", "2001:DB8:0:0::1", "[2001:db8::1]",
    "[2001:db8::1]:443", "2001:db8::1", "::1", "fe80::1%eth0", "[fe80::1%25]:80", "fe80::1%",
    "10.0.0.1%eth0", "::ffff:203.0.113.7", "[::ffff:cb00:7107]:9", "::10.0.0.1", "unknown",
    "example.com", "_hidden", "010.0.0.1", "10.0.0.01", "1.2.3.4.5", "1.2.3.4.", "1.2.3",
    "256.0.0.1", "\u0661.\u0662.\u0663.\u0664", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:123456",
    "1.2.3.4:+80", "1.2.3.4: 80", "[2001:db8::1", "[2001:db8::1]80", "[2001:db8::1]:",
    "[203.0.113.7]", "\"203.0.113.7\"", "2001:db8::1::2", "2001:db8::g", "for=203.0.113.7",
    "10.0.0.1:0", "[::1]:0", "0x7f.1", "127.1", "0177.0.0.1", "1.2.3.4\uff0e", "::ffff:1.2.3.4:80",
    "[::ffff:1.2.3.4]:80", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "::ffff:0.0.0.0", "::",
    "0.0.0.0", "255.255.255.255", "[::]:65535", "1.2.3.4:00080", "\u00a01.2.3.4",
]

CONFIGS = [
    {},
    {"client_ip": {"downstream_filter_state": "client_ip.downstream_address",
                   "trusted_proxies": ["10.0.0.0/8", "2001:db8:ffff::/48"], "header": "x-forwarded-for",
                   "on_invalid": "unknown"},
     "access": {"mode": "enforce", "match": "client", "allow": ["203.0.113.0/24", "2001:db8::/32",
                                                                 "198.51.100.7"],
                "deny": ["203.0.113.66"], "deny_status": 403, "deny_body": "access denied\n",
                "rules": [{"name": "admin", "hosts": ["admin.example.com", "*.internal.example.com"],
                           "path_prefixes": ["/admin"], "allow": ["10.20.0.0/16"], "deny": [],
                           "mode": "enforce"}]},
     "forward": {"headers": ["x-real-ip"], "port_header": "x-client-port", "x_forwarded_for": "keep"}},
    {"client_ip": {"trusted_hops": 2, "header": "X-Real-IP", "on_invalid": "downstream"},
     "access": {"mode": "dry_run", "match": "downstream", "allow": ["::ffff:10.0.0.0/104", "::/0"]},
     "forward": {"headers": ["x-client-ip"], "x_forwarded_for": "append"}},
    {"client_ip": {"trusted_hops": 2.0}, "forward": {"x_forwarded_for": "replace"},
     "access": {"deny_status": 599.0, "allow": ["10.1.2.3/8", "0.0.0.0/0"]}},
    {"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "trusted_hops": 2}},
    {"access": {"allow": ["10.0.0.300/8"]}},
    {"access": {"rules": [{"name": "a"}, {"name": "a"}]}},
    {"forward": {"headers": ["Host"]}},
    {"client_ip": None, "access": None, "forward": None},
]
RAW_CONFIGS = [b"", b"   \n", b"{", b"[]", b"null", b'{"client_ip": {"trusted_hops": 1e400}}',
               b'{"x": 1}', b'{"access": {"deny_status": 4e2}}', b'{"\\u0000": 1}']


def header_seed(mode: int, pick: int, ds: int, lines: list) -> bytes:
    """See fuzz_targets/header.rs: mode, pick, downstream index, then name-byte+value lines."""
    names = {"xff": b"\x00", "XFF": b"\x01", "xri": b"\x02", "XRI": b"\x03", "cf": b"\x04",
             "auth": b"\x05", "path": b"\x06", "other": b"\x07"}
    body = b"\n".join(names[n] + v.encode() for n, v in lines)
    return bytes([mode, pick, ds]) + body


HEADERS = [
    header_seed(0, 0, 0, [("xff", "6.6.6.6, 1.1.1.1:5555, 10.0.0.3")]),
    header_seed(0, 0, 0, [("xff", "1.1.1.1, 2.2.2.2"), ("other", "9.9.9.9"), ("XFF", "3.3.3.3")]),
    header_seed(0, 1, 0, [("xff", "1.1.1.1, 10.0.0.2")]),
    header_seed(1, 1, 0, [("xff", "6.6.6.6, 1.1.1.1, 10.0.0.3")]),
    header_seed(1, 0, 0, [("xff", "1.1.1.1, unknown")]),
    header_seed(0, 0, 0, [("xff", "1.1.1.1, 010.0.0.1")]),
    header_seed(4, 0, 0, [("xff", "1.1.1.1, 010.0.0.1")]),
    header_seed(2, 0, 0, [("xri", "1.1.1.1")]),
    header_seed(2, 0, 0, [("xri", "1.1.1.1, 2.2.2.2")]),
    header_seed(2, 0, 0, [("xri", "1.1.1.1"), ("XRI", "2.2.2.2")]),
    header_seed(0, 2, 3, [("xff", "::ffff:1.1.1.1, [fd00::9]:80, fd00::8%eth0")]),
    header_seed(0, 3, 2, [("xff", " ,1.1.1.1 ,,\t2.2.2.2\t, "), ("xff", "::ffff:192.168.0.9")]),
    header_seed(3, 7, 1, [("xff", "junk, " * 200 + "1.1.1.1, 10.0.0.3")]),
    header_seed(0, 0, 0, [("auth", "admin.example.com"), ("path", "/admin"), ("xff", "203.0.113.5")]),
    header_seed(0, 0, 8, [("xff", "1.1.1.1")]),
]


def write(target: str, items: list) -> None:
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for data in items:
        (d / ("seed-" + hashlib.sha1(data).hexdigest())).write_bytes(data)


if __name__ == "__main__":
    write("entry", [e.encode() for e in ENTRIES])
    write("config", [json.dumps(c, indent=1).encode() for c in CONFIGS] + RAW_CONFIGS)
    write("header", HEADERS)
    for t in ("entry", "config", "header"):
        print(t, len(list((HERE / "corpus" / t).iterdir())), "files")
