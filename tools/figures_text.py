"""The text records of `make hostile-json` and `make retired` (tests/reliability/results/*.txt), read
and rendered for tools/figures.py: pure functions of the records' text."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

HOSTILE_CASE = re.compile(r"^  body ([\d.]+) MiB, peak ([\d.]+) KiB \(([\d.]+)x the body\), (\d+) ms, "
                          r"(accepted, (\d+) entries|rejected)")


def header(text: str) -> str:
    """What a text record's first line says after its ``#``: when, which commit."""
    first = text.splitlines()[0] if text else ""
    return first.split("#", 1)[1].strip() if first.startswith("$") and "#" in first else ""


def hostile_cases(path: Path) -> Optional[list[dict]]:
    """The cases of a make hostile-json record: title, body MiB, peak KiB, ratio, ms, entries."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    cases = []
    for title, line in zip(lines, lines[1:]):
        m = HOSTILE_CASE.match(line)
        if m:
            cases.append({"title": title, "body_mib": float(m.group(1)), "peak_kib": float(m.group(2)),
                          "ratio": float(m.group(3)), "ms": int(m.group(4)),
                          "entries": int(m.group(6)) if m.group(6) else None})
    return cases


def heap(kib: float, ratio: float) -> str:
    shown = f"{kib:,.1f} KiB" if kib < 1024 else f"{kib / 1024:,.1f} MiB"
    return shown + (f" ({ratio:.0f}×)" if ratio >= 2 else "")


def hostile_table(before: list[dict], after: list[dict]) -> str:
    old = {c["title"]: c for c in before}
    rows = ["| body (`benches/hostile_json.rs`) | outcome | peak heap before | after |", "|---|---|---|---|"]
    for c in after:
        b = old.get(c["title"])
        outcome = f"accepted, {c['entries']:,} entries" if c["entries"] is not None else "rejected"
        rows.append(f"| {c['title'].replace('|', '&#124;')} | {outcome} | "
                    f"{heap(b['peak_kib'], b['ratio']) if b else '–'} | {heap(c['peak_kib'], c['ratio'])} |")
    return "\n".join(rows)


def hostile_headline(before: list[dict], after: list[dict]) -> str:
    """The numbers body and the deeply nested one, before and after (docs/sources.md)."""
    old = {c["title"]: c for c in before}
    (numbers,) = [c for c in after if c["title"].startswith("numbers:")]
    (deep,) = [c for c in after if c["title"].startswith("deep nesting:")]
    def peak(c: dict) -> str:
        return heap(c["peak_kib"], 0)
    return (f"a {numbers['body_mib']:g} MiB body of numbers used to cost {peak(old[numbers['title']])} of heap, "
            f"one of arrays nested 100 deep {peak(old[deep['title']])}; now {peak(numbers)} and "
            f"{peak(deep)} beside the body")


def hostile_times(before: list[dict], after: list[dict]) -> str:
    def span(cases: list[dict]) -> str:
        ms = [c["ms"] for c in cases]
        return f"{min(ms):,}–{max(ms):,} ms"
    return f"before: {span(before)} per body; after: {span(after)}"


MIB = r"rss ([\d.]+) MiB, allocated ([\d.]+) MiB"


def retired_run(path: Path) -> Optional[dict]:
    """A make retired record: its arguments, the memory after each step, the values emptied."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    args = dict(re.findall(r"--(reconfigs|settle|concurrency) (\S+)", text.splitlines()[0]))
    loaded = [(float(r), float(a)) for r, a in re.findall(r"^configuration \d+ loaded: " + MIB, text, re.M)]
    settled = re.search(r"^[\d.]+ s after the last: " + MIB, text, re.M)
    emptied = re.search(r"^replaced configurations emptied: (\d+) of (\d+)", text, re.M)
    if not loaded or settled is None or emptied is None:
        return None
    return {"header": header(text), "reconfigs": int(args.get("reconfigs", len(loaded) - 1)),
            "settle": float(args.get("settle", 0)), "concurrency": args.get("concurrency"),
            "first": loaded[0], "last": loaded[-1], "settled": (float(settled.group(1)), float(settled.group(2))),
            "emptied": (int(emptied.group(1)), int(emptied.group(2)))}


def retired_table(before: dict, after: dict) -> str:
    n, settle = after["reconfigs"], f"{after['settle']:g}"
    rows = [("RSS after the first load", lambda r: f"{r['first'][0]:.1f} MiB"),
            (f"RSS after {n} reconfigurations", lambda r: f"{r['last'][0]:.1f} MiB"),
            (f"RSS {settle} s after the last", lambda r: f"{r['settled'][0]:.1f} MiB"),
            (f"allocated after {n} reconfigurations", lambda r: f"{r['last'][1]:.1f} MiB"),
            (f"allocated {settle} s after the last", lambda r: f"{r['settled'][1]:.1f} MiB"),
            ("replaced configurations emptied", lambda r: f"{r['emptied'][0]} of {r['emptied'][1]}")]
    out = ["| | before | after |", "|---|---|---|"]
    out += [f"| {label} | {fn(before)} | {fn(after)} |" for label, fn in rows]
    return "\n".join(out)
