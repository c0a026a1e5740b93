"""What a README command installs, against what it starts.

A machine that already has HAProxy or Envoy hides a missing install step: ``make demo`` once started
HAProxy without depending on the target that installs it, and passed everywhere but on a fresh
machine. Here the install targets a command depends on come from make's own plan
(``make -n -B --debug=b <target>``: every target it would remake, whatever is installed), and the
programs it starts from ``procs.start``'s record (``CLIENT_IP_PROGRAM_LOG``).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from . import procs
from .procs import PROGRAM_LOG_ENV

REPO = Path(__file__).resolve().parents[2]


def make_plan(target: str) -> set[str]:
    """Every target ``make <target>`` would run on a machine that has nothing yet."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "-n", "-B", "--debug=b", target], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"make -n {target} failed: {out.stderr.strip()}")
    return set(re.findall(r"Must remake target '([^']+)'", out.stdout))


def recorded(path: str | os.PathLike) -> set[str]:
    """The programs ``procs.start`` recorded in ``path``. A missing or empty record is an error, not
    an empty set: a check of "every program started is installed" over nothing would pass."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise AssertionError(f"no record of started programs at {path}: nothing ran that records "
                             f"({PROGRAM_LOG_ENV} unset, or no program was started)") from None
    names = {line.strip() for line in text.splitlines() if line.strip()}
    if not names:
        raise AssertionError(f"the record of started programs at {path} is empty")
    return names


def missing_installs(programs: set[str], target: str) -> list[str]:
    """For each program ``make <target>`` starts but does not install, a sentence saying so."""
    plan = make_plan(target)
    problems = []
    for name in sorted(programs - procs.BASE_PROGRAMS):
        install = procs.INSTALLED_BY.get(name)
        if install is None:
            problems.append(f"{name}: started, but harness.procs.INSTALLED_BY names no install target")
        elif install not in plan:
            problems.append(f"`make {target}` starts {name} but does not depend on `make {install}`,"
                            f" which installs it")
    return problems
