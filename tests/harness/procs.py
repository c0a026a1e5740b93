"""Process and port helpers shared by the harness.

Every child process is started in its own session (``start_new_session=True``) and is stopped by
killing its process group by id: never by name.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

# Every program the harness starts (``start``), and the make target that installs it on a fresh
# machine. ``start`` refuses any other program, so a new one cannot be started without naming its
# install step here; tests/test_readme_commands.py and the suite's closing check (conftest.py)
# compare these targets with what each README command installs (``make -n -B <command>``).
INSTALLED_BY = {
    "envoy": "envoy",
    "haproxy": "haproxy",
    "docker-registry": "oci-tools",
    "openssl": "openssl",
    "nginx": "nginx",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "redis-server": "redis",
    "ratelimit": "ratelimit-service",
    "istio-xds": "istio-xds",   # tests/istio, built per pinned Istio release into .work/istio/<minor>/
    "istioctl": "istio-xds",    # built from the same istio.io/istio module
}
# Programs every machine the README names has (Debian with rustup and python3): no install step.
BASE_PROGRAMS = {"python3", "python", "curl"}
# When set, ``start`` appends the name of each program it starts to this file, one per line.
PROGRAM_LOG_ENV = "CLIENT_IP_PROGRAM_LOG"


def note_program(argv0: str) -> str:
    """Checks and records (``PROGRAM_LOG_ENV``) a program about to be run, as ``start`` does for
    the ones it starts: for short-lived tools run with ``subprocess.run``. Returns its name."""
    name = program_name(argv0)
    if name not in INSTALLED_BY and name not in BASE_PROGRAMS:
        raise ValueError(f"{name}: not in harness.procs.INSTALLED_BY; name the make target that installs it")
    record = os.environ.get(PROGRAM_LOG_ENV)
    if record:
        with open(record, "a") as fh:
            fh.write(name + "\n")
    return name


def program_name(argv0: str) -> str:
    """The program's name as INSTALLED_BY knows it: its file name (``.venv/bin/envoy`` → ``envoy``)."""
    name = os.path.basename(argv0)
    return "python3" if name.startswith("python3") else name


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on the loopback ``host`` that no other process is handed before its user binds
    it, for about a minute: the suite runs in parallel (pytest-xdist workers, other sessions), and a
    port only read back from a bind to port 0 and released could go to another worker's bind(0) or
    to an outgoing connection's source port before this one's Envoy binds it.

    The port is left in TIME_WAIT by a connection accepted on it and closed from the accepting side:
    while it lasts (60 s on Linux) the kernel gives the port to no bind(0) and no connect(), and
    only a socket with SO_REUSEADDR may bind it; every program the harness starts sets it on its
    listeners (Envoy, HAProxy, nginx, redis, Go's net.Listen; the harness's own servers too)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the TIME_WAIT socket inherits it
        listener.bind((host, 0))
        listener.listen(1)
        address = listener.getsockname()
        with socket.socket(family, socket.SOCK_STREAM) as client:
            client.connect(address)
            accepted, _ = listener.accept()
            accepted.close()  # the accepting side closes first: its end (our port) enters TIME_WAIT
        return address[1]


def wait_until(fn: Callable[[], Optional[T]], timeout: float, interval: float = 0.05,
               what: str = "condition") -> T:
    """Call ``fn`` until it returns a truthy value; return it. Raise TimeoutError after ``timeout`` s.
    OSError/ValueError/KeyError from ``fn`` count as "not yet"; any other exception propagates."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except (OSError, ValueError, KeyError) as exc:  # transient (not up yet, partial file): retry
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):  # (IPv6 literals work as is)
            return True
    except OSError:
        return False


def wait_listening(proc: subprocess.Popen, port: int, timeout: float, what: str,
                   log_path: Optional[str] = None) -> None:
    """Wait until ``proc`` accepts connections on 127.0.0.1:``port``. If it exits first, raise with
    its log; on any failure it is stopped."""
    def up():
        if proc.poll() is not None:
            log = open(log_path, errors="replace").read() if log_path else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log}")
        return port_open("127.0.0.1", port)
    try:
        wait_until(up, timeout, what=f"{what} listening")
    except Exception:
        stop(proc)
        raise


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGKILL it when the test process dies, so a killed pytest
    leaves no Envoy or HAProxy behind. Best effort elsewhere."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux/glibc: the fixtures' teardown still stops it
        pass


def start(argv: list[str], log_path: Optional[str] = None, cwd: Optional[str] = None,
          env: Optional[dict] = None) -> subprocess.Popen:
    """Start ``argv`` in a new session (its own process group), stdout+stderr appended to
    ``log_path`` (or discarded), with ``env`` added to the environment. The program must be one of
    INSTALLED_BY or BASE_PROGRAMS."""
    note_program(argv[0])
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    full_env = {**os.environ, **env} if env else None
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd, env=full_env, start_new_session=True,
                                preexec_fn=_die_with_parent)
    finally:
        if log_path:
            out.close()


def stop(proc: Optional[subprocess.Popen], grace: float = 5.0) -> Optional[int]:
    """Stop the process group led by ``proc``: SIGTERM, then SIGKILL after ``grace`` s. Idempotent."""
    if proc is None:
        return None
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left in the group (the leader may already be gone) is killed for good.
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    return proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
