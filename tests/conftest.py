"""Fixtures of the integration suite.

Prerequisites are checked at session start; a missing Envoy, .wasm or HAProxy makes the tests that
need it FAIL (never skip) with the command that installs it.

Module-scoped ``envoy_factory`` starts Envoys that live until the module ends, so the tests sharing a
configuration share one Envoy (a test only ever looks at its own request: x-test-id, counter deltas).

Both builds: a module marked ``pytestmark = pytest.mark.both_builds`` runs once per build of
``$CLIENT_IP_BUILDS`` (``make test`` sets ``wasm,native``; a bare pytest run defaults to ``wasm``, harness.manifests.DEFAULT_BUILDS): the module-scoped ``build`` fixture is parametrised,
and its ``envoy_factory`` starts every Envoy with that build's HTTP filter block (EnvoyOptions.build;
the same configuration JSON). Tests are not copied: one test function, ids ``[wasm]`` / ``[native]``.
Other modules see ``build == "wasm"``.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import envoy as envoy_mod  # noqa: E402
from harness import haproxy as haproxy_mod  # noqa: E402
from harness import manifests  # noqa: E402
from harness import procs  # noqa: E402
from harness.upstream import EchoServer  # noqa: E402


def _missing_envoy() -> str:
    path = envoy_mod.envoy_binary()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return f"Envoy binary not found at {path} (CLIENT_IP_ENVOY): run `make envoy`"
    return ""


def _missing_wasm() -> str:
    path = manifests.wasm_path_from_env()
    if not os.path.isfile(path):
        return f"the filter .wasm is not built at {path} (CLIENT_IP_WASM): run `make build`"
    return ""


def _missing_native() -> str:
    path = manifests.native_path_from_env()
    if not os.path.isfile(path):
        return f"the native build is not built at {path} (CLIENT_IP_NATIVE_SO): run `make native`"
    return ""


def _missing_haproxy() -> str:
    if not haproxy_mod.haproxy_binary():
        return "haproxy is not installed: run `make haproxy`"
    return ""


# The programs this session starts (harness.procs.start records them); the suite's last test checks
# that `make test` installs each of them (tests/test_readme_commands.py). The file is the one
# $CLIENT_IP_PROGRAM_LOG names when it is set: by make integration (one file for its parallel and its
# serial pytest run) or, in a pytest-xdist worker, by the controller (pytest_configure below), so the
# workers of one run share it. Otherwise this process names it, and removes it at start and end.
_INHERITED_LOG = os.environ.get(procs.PROGRAM_LOG_ENV)
SESSION_PROGRAMS = Path(_INHERITED_LOG or Path(os.environ.get("TMPDIR", "/tmp"))
                        / f"client-ip-programs-{os.getpid()}.txt")
LAST_TEST = "test_make_test_installs_every_program_the_suite_started"
# A pytest-xdist worker (pytest -n N): its id, e.g. "gw0"; None in a plain pytest run.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def pytest_configure(config):
    config.addinivalue_line("markers", "both_builds: run the module once per build of $CLIENT_IP_BUILDS "
                                       "(wasm, native), through the module-scoped build fixture")
    config.addinivalue_line("markers", "only_builds(*names): in a both_builds module, a test of one "
                                       "build's own mechanics, run on those builds only")
    config.addinivalue_line("markers", "serial: a test that needs the machine to itself (a timing bound "
                                       "that parallel workers' load would break) or that must run after "
                                       "every other (the session's closing check): left out of a "
                                       "pytest-xdist run; make integration runs them after it, alone")
    if not _INHERITED_LOG:
        SESSION_PROGRAMS.unlink(missing_ok=True)
    os.environ[procs.PROGRAM_LOG_ENV] = str(SESSION_PROGRAMS)  # children and xdist workers inherit it


def pytest_unconfigure(config):
    if not _INHERITED_LOG:
        SESSION_PROGRAMS.unlink(missing_ok=True)


# A module that starts harness.istio's gateway/sidecar Envoys or its Pod apps (PodEcho) uses fixed
# loopback addresses (Istio's 8080/8443, the Pods' IPs and target ports; SO_REUSEPORT apps): two such
# modules at once would share them, so under pytest-xdist they are one unit of work, run in turn.
ISTIO_FIXED_ADDRESSES = re.compile(r"\b(PodEcho|I\.IstioEnvoy)\b")
ISTIO_UNIT = "istio-fixed-addresses"
ROOTDIR = Path(__file__).resolve().parent.parent  # what nodeids are relative to (the repository)


@functools.lru_cache(maxsize=None)
def _uses_istio_fixed_addresses(path: str) -> bool:
    try:
        return bool(ISTIO_FIXED_ADDRESSES.search(Path(path).read_text()))
    except OSError:
        return False


def xdist_unit(nodeid: str) -> str:
    """The unit of work a pytest-xdist worker takes whole (the scheduler below): the test's module
    (its file), so that its module-scoped Envoys start once; a both_builds module's tests of one
    build (a "wasm" or "native" part of the parametrisation id) are a unit of their own, as each
    build has Envoys of its own anyway, so that the largest modules run on two workers; the modules
    with Istio's fixed addresses are one unit."""
    path, _, rest = nodeid.partition("::")
    if _uses_istio_fixed_addresses(str(ROOTDIR / path)):
        return ISTIO_UNIT
    params = rest[rest.find("[") + 1:-1].split("-") if rest.endswith("]") else []
    build = next((b for b in ("wasm", "native") if b in params), None)
    return f"{path}[{build}]" if build else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """make integration's ``--dist loadfile``, by ``xdist_unit``: pytest-xdist's own loadgroup does
    not work with pytest 9 (it renames items through an attribute pytest 9 no longer reads). Units
    are handed out largest first (most tests), one or two per worker at a time."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_unit(nodeid)
    return ByUnit(config, log)


def pytest_collection_modifyitems(session, config, items):
    """The check of what the session started runs after everything else. In a pytest-xdist worker
    the ``serial`` tests are left out (deselected): make integration runs them in a pytest of their
    own after the parallel one (``-m serial``), where nothing else loads the machine."""
    if XDIST_WORKER:
        serial = [item for item in items if item.get_closest_marker("serial")]
        if serial:
            config.hook.pytest_deselected(items=serial)
            items[:] = [item for item in items if not item.get_closest_marker("serial")]
    items.sort(key=lambda item: item.name == LAST_TEST)


def pytest_generate_tests(metafunc):
    """A both_builds module's tests, once per build, grouped by build (module scope)."""
    if "build" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_builds"):
        builds = manifests.builds_from_env()
        only = metafunc.definition.get_closest_marker("only_builds")
        if only:  # a rule of one build's mechanics (e.g. proxy-wasm's one VM per worker)
            builds = tuple(b for b in builds if b in only.args)
        metafunc.parametrize("build", builds, indirect=True, scope="module")


def pytest_report_header(config):
    lines = [f"envoy: {envoy_mod.envoy_binary()}", f"wasm:  {manifests.wasm_path_from_env()}",
             f"native: {manifests.native_path_from_env()}", f"builds: {','.join(manifests.builds_from_env())}",
             f"haproxy: {haproxy_mod.haproxy_binary()}"]
    checks = [_missing_envoy, _missing_wasm, _missing_haproxy]
    if "native" in manifests.builds_from_env():
        checks.append(_missing_native)
    for check in checks:
        msg = check()
        if msg:
            lines.append("MISSING: " + msg)
    return lines


@pytest.fixture(scope="session")
def envoy_bin() -> str:
    msg = _missing_envoy()
    if msg:
        pytest.fail(msg, pytrace=False)
    return envoy_mod.envoy_binary()


@pytest.fixture(scope="session")
def wasm(envoy_bin) -> str:
    """The built filter; a test that needs it fails (not skips) when it is missing."""
    msg = _missing_wasm()
    if msg:
        pytest.fail(msg, pytrace=False)
    return manifests.wasm_path_from_env()


@pytest.fixture(scope="session")
def native_so(envoy_bin) -> str:
    """The native build (the dynamic module .so); a test that needs it fails when it is missing."""
    msg = _missing_native()
    if msg:
        pytest.fail(msg, pytrace=False)
    return manifests.native_path_from_env()


@pytest.fixture(scope="module")
def build(request) -> str:
    """The build this module's Envoys load: the parameter of a both_builds module, else "wasm".
    The native build, when asked for and missing, fails the tests (never skips)."""
    name = getattr(request, "param", "wasm")
    if name == "native":
        msg = _missing_native()
        if msg:
            pytest.fail(msg, pytrace=False)
    return name


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    msg = _missing_haproxy()
    if msg:
        pytest.fail(msg, pytrace=False)
    return haproxy_mod.haproxy_binary()


@pytest.fixture(scope="session")
def echo():
    """The echo upstream shared by every Envoy of the session."""
    with EchoServer() as server:
        yield server


@pytest.fixture(scope="session")
def gateway_fragments() -> manifests.Fragments:
    return manifests.gateway()


@pytest.fixture(scope="session")
def sidecar_fragments() -> manifests.Fragments:
    return manifests.sidecar()


class EnvoyFactory:
    """Starts Envoys for one module; all are stopped (process group killed) at module teardown."""

    def __init__(self, echo: EchoServer, workdir: Path, build: str = "wasm"):
        self.echo = echo
        self.workdir = workdir
        self.build = build  # filled into every EnvoyOptions whose build is None
        self.started: list = []

    def _with_build(self, opts: envoy_mod.EnvoyOptions) -> envoy_mod.EnvoyOptions:
        if opts.build is None:
            opts = envoy_mod.copy_options(opts, build=self.build)
        return opts

    def __call__(self, opts: envoy_mod.EnvoyOptions | None = None, dynamic: bool = False,
                 **option_changes) -> envoy_mod.Envoy:
        opts = opts or envoy_mod.EnvoyOptions()
        if option_changes:
            opts = envoy_mod.copy_options(opts, **option_changes)
        opts = self._with_build(opts)
        name = f"envoy{len(self.started)}"
        env = envoy_mod.Envoy(opts, upstream_port=self.echo.port, workdir=str(self.workdir),
                              dynamic=dynamic, name=name)
        self.started.append(env)
        env.start()
        return env

    def refused(self, opts: envoy_mod.EnvoyOptions, **kw) -> envoy_mod.Refused:
        name = f"refused{len(self.started)}"
        self.started.append(None)
        return envoy_mod.run_refused(self._with_build(opts), workdir=str(self.workdir), upstream_port=self.echo.port,
                                     name=name, **kw)

    def stop_all(self) -> None:
        for env in self.started:
            if env is not None:
                env.stop()


@pytest.fixture(scope="module")
def envoy_factory(request, echo, envoy_bin, build, tmp_path_factory):
    factory = EnvoyFactory(echo, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1] + "-" + build),
                           build)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def haproxy_factory(request, haproxy_bin, tmp_path_factory):
    started: list = []
    workdir = tmp_path_factory.mktemp("haproxy")

    def make(backend_port: int, **kw) -> haproxy_mod.HAProxy:
        hap = haproxy_mod.HAProxy(backend_port, workdir=str(workdir), name=f"haproxy{len(started)}", **kw)
        started.append(hap)
        return hap.start()
    try:
        yield make
    finally:
        for hap in started:
            hap.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of every Envoy log of the module (the wasm debug lines)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        envs = []
        for value in item.funcargs.values():
            if isinstance(value, envoy_mod.Envoy):
                envs.append(value)
            elif isinstance(value, EnvoyFactory):
                envs += [e for e in value.started if e is not None]
        for env in dict.fromkeys(envs):
            rep.sections.append((f"{env.name} log tail ({env.log_path})", env.log_tail(12)))
