#!/usr/bin/env python3
"""`make fuzz`'s record: each target's executions, time and committed corpus, read from libFuzzer's
final statistics in .work/fuzz/<target>.log, written to tests/reliability/results/fuzz.json
(RELIABILITY.md's fuzzing figures come from it: tools/figures.py).

    tools/fuzz_record.py SECONDS TARGET...
"""
from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "reliability" / "results" / "fuzz.json"


def target(name: str) -> dict:
    log = (REPO / ".work" / "fuzz" / f"{name}.log").read_text(errors="replace")
    done = re.findall(r"^Done (\d+) runs in (\d+) second", log, re.M)
    if not done:
        raise SystemExit(f"fuzz_record: no 'Done' line in .work/fuzz/{name}.log")
    runs, seconds = map(int, done[-1])
    executed = re.findall(r"stat::number_of_executed_units: (\d+)", log)
    return {"target": name, "executions": int(executed[-1]) if executed else runs, "seconds": seconds,
            "crashes": len(re.findall(r"^==\d+== ERROR: libFuzzer", log, re.M)),
            "corpus_files": sum(1 for _ in (REPO / "fuzz" / "corpus" / name).iterdir())}


def main() -> int:
    seconds, names = int(sys.argv[1]), sys.argv[2:]
    record = {"command": f"make fuzz FUZZ_SECONDS={seconds}", "seconds_per_target": seconds,
              "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
              "targets": [target(n) for n in names]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"fuzz: wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
