"""The README's commands work on a fresh machine: each make target a README command names exists, and
each command depends on the install target of every program it starts (harness.prereqs). A machine
that already has HAProxy or Envoy would hide a missing install step; make's own plan does not."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import conftest
from harness import prereqs, procs

REPO = Path(__file__).resolve().parent.parent


def readme_make_targets() -> set[str]:
    """Every `make <target>` the README, the folders' READMEs and the reference in docs/ tell a user
    to run."""
    targets = set()
    for doc in [REPO / "README.md", *sorted(REPO.glob("*/README.md")), *sorted(REPO.glob("docs/*.md"))]:
        for cmd in re.findall(r"`make ([a-z][a-z0-9-]*)[^`]*`|^make ([a-z][a-z0-9-]*)", doc.read_text(), re.M):
            targets.update(t for t in cmd if t)
    return targets


def test_readme_names_make_demo_and_make_test():
    assert {"demo", "test"} <= readme_make_targets()


def test_every_make_command_in_the_readmes_is_a_make_target():
    broken = {}
    for target in sorted(readme_make_targets()):
        try:
            prereqs.make_plan(target)
        except RuntimeError as exc:
            broken[target] = str(exc)
    assert not broken, broken


def test_every_program_the_harness_starts_has_an_install_target():
    targets = {t for t in procs.INSTALLED_BY.values()}
    missing = {t for t in targets if t not in prereqs.make_plan(t)}
    assert not missing, f"INSTALLED_BY names targets make does not have: {missing}"


def test_the_harness_refuses_to_start_a_program_without_an_install_target(tmp_path):
    try:
        procs.start(["nonexistent-program-xyz"])
    except ValueError as exc:
        assert "INSTALLED_BY" in str(exc)
    else:
        raise AssertionError("procs.start started a program it has no install target for")


def test_a_missing_or_empty_record_of_started_programs_is_an_error(tmp_path):
    """Over an empty set "every program started is installed" would hold: no record is no check."""
    for record in (tmp_path / "absent.txt", tmp_path / "empty.txt"):
        if record.name == "empty.txt":
            record.write_text("")
        try:
            prereqs.recorded(record)
        except AssertionError as exc:
            assert str(record) in str(exc)
        else:
            raise AssertionError(f"recorded({record.name}) returned instead of failing")
    (tmp_path / "one.txt").write_text("envoy\nhaproxy\n\n")
    assert prereqs.recorded(tmp_path / "one.txt") == {"envoy", "haproxy"}


def test_missing_installs_reports_a_program_the_command_does_not_install():
    # `make unit` installs nothing: a command that started HAProxy under it would be flagged.
    problems = prereqs.missing_installs({"haproxy", "curl"}, "unit")
    assert problems == ["`make unit` starts haproxy but does not depend on `make haproxy`, which installs it"]


def test_make_demo_installs_every_program_it_starts_and_shows_haproxy_allowed_and_refused(
        tmp_path, wasm, envoy_bin, haproxy_bin):
    """Runs the demo's scripts (as `make demo` does, after its prerequisites), recording what
    they start."""
    record = tmp_path / "programs.txt"
    env = {**os.environ, procs.PROGRAM_LOG_ENV: str(record)}
    outs = []
    for script in ("demo.py", "network_demo.py", "rate_limit_demo.py", "geo_demo.py"):
        run = subprocess.run([sys.executable, str(REPO / "demo" / script)], env=env, capture_output=True,
                             text=True, timeout=180)
        assert run.returncode == 0, script + ":\n" + run.stdout[-2000:] + run.stderr[-2000:]
        outs.append(run)
    out = outs[0]
    started = prereqs.recorded(record)
    with open(conftest.SESSION_PROGRAMS, "a") as session:  # the suite started them too
        session.writelines(name + "\n" for name in sorted(started))
    assert {"envoy", "haproxy", "openssl"} <= started, started
    assert prereqs.missing_installs(started, "demo") == []
    rows = {line.split("  ")[0]: line for line in out.stdout.splitlines()}
    allowed = next(v for k, v in rows.items() if k.startswith("HAProxy send-proxy-v2, client 127.0.0.2"))
    refused = next(v for k, v in rows.items() if k.startswith("HAProxy send-proxy-v2, client 127.0.0.3"))
    assert re.search(r"\s200\s+127\.0\.0\.2\s", allowed), allowed
    assert re.search(r"\s403\s+127\.0\.0\.3\s+deny\s", refused), refused
    # The rate-limit demo: client A limited, client B not, a forged key header no help.
    limits = {line.split("  ")[0]: line for line in outs[2].stdout.splitlines()}
    assert re.search(r"\s429\s+203\.0\.113\.7/32\s", limits["client A, request 4"])
    assert re.search(r"\s200\s+203\.0\.113\.8/32\s", limits["client B"])
    assert re.search(r"\s429\s+203\.0\.113\.7/32\s", limits["client A forges the key header"])
    # The geo demo: the country header at the app (a forged one replaced), a refused country.
    geo = {line.split("  ")[0]: line for line in outs[3].stdout.splitlines()}
    assert re.search(r"\s200\s+FR\s+64496\s+allow\s+FR\s+64496\s*$",
                     geo["client in FR forges x-client-country: US"])
    assert re.search(r"\s403\s+KP\s+-\s+deny\s+\(not reached\)", geo["refused country KP"])


@pytest.mark.serial  # after every other test, parallel ones included
def test_make_test_installs_every_program_the_suite_started():
    """Runs last (conftest.py): every program this session started is installed by `make test`. It
    checks what the suite started, so it fails when nothing was: run it with the suite
    (`make integration`), where every module before it records what it starts."""
    started = prereqs.recorded(conftest.SESSION_PROGRAMS)
    assert "envoy" in started, f"the session started no Envoy (run this with the suite): {started}"
    assert prereqs.missing_installs(started, "test") == []
