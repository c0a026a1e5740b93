"""The documents stay true to the repository: every path a document names exists, every counter and
gauge the filter defines in Envoy is documented, the configuration-error examples are what the filter
logs, figures of the module's size are those BENCHMARKS.md measured, and no file leans on anything outside
the repository (the contract is docs/, in the repository's own words)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness import envoy as E
from harness import procs

REPO = Path(__file__).resolve().parent.parent

# The top-level entries a path in a document may start with; anything else in backticks is not a
# repository path (a key, a header, a file on a proxy).
TOP = ("src", "adapters", "tests", "docs", "envoyfilter", "istio-examples", "demo", "bench", "benches", "oci",
       "tools", "fuzz", "observability", ".ci", "native")
TOP_FILES = ("Makefile", "Cargo.toml", "Cargo.lock", "README.md", "RELIABILITY.md", "BENCHMARKS.md",
             "CHANGELOG.md", "LICENSE")


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard", *patterns], capture_output=True, check=True).stdout
    return [REPO / p for p in sorted(set(out.decode().split("\0"))) if p and (REPO / p).is_file()]


def documents() -> list[Path]:
    return [p for p in tracked("*.md") if "fuzz/corpus" not in str(p)]


def named_paths(doc: Path) -> list[tuple[str, Path]]:
    """(as written, resolved) for each repository path the document names: relative link targets,
    resolved against the document's folder, and backticked paths, resolved against the repository."""
    text = doc.read_text()
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        found.append((target, (doc.parent / path).resolve()))
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.rstrip(".,:;)")
        first = token.split("/")[0]
        if not (first in TOP and "/" in token) and token not in TOP_FILES:
            continue
        if re.search(r"[<>*{}$…|]", token) or token.endswith(":"):
            continue  # a pattern (`fuzz/corpus/<target>`), not one path
        found.append((token, (REPO / token.split(":")[0]).resolve()))
    return found


def written_by_a_command(resolved: Path) -> bool:
    """A record a make target or a script writes (``tests/reliability/results/soak.json``) need not be
    committed: the code that writes it names the path (the Makefile with its variables expanded)."""
    rel = str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)
    makefile = (REPO / "Makefile").read_text()
    variables = dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(\S+)\s*$", makefile, re.M))
    texts = [re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), makefile)]
    texts += [p.read_text() for p in tracked("*.py", "*.sh") if p.name != "test_docs.py"]
    return any(rel in t for t in texts)


def test_every_repository_path_a_document_names_exists():
    missing = []
    for doc in documents():
        for written, resolved in named_paths(doc):
            if not resolved.exists() and not written_by_a_command(resolved):
                missing.append(f"{doc.relative_to(REPO)}: {written}")
    assert not missing, "documents name paths that do not exist:\n" + "\n".join(missing)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^a-z0-9 -]", "", text).replace(" ", "-")


def test_every_anchor_a_document_links_to_is_a_heading_there():
    broken = []
    for doc in documents():
        for target in re.findall(r"\]\(([^)\s]*#[^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, anchor = target.split("#", 1)
            page = (doc.parent / path).resolve() if path else doc
            if page.suffix != ".md" or not page.exists():
                continue
            anchors = {slug(h) for h in re.findall(r"^#+ (.*)$", page.read_text(), re.M)}
            if anchor not in anchors:
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert not broken, "links to headings that do not exist:\n" + "\n".join(broken)


def test_the_docs_index_lists_every_page():
    index = (REPO / "docs" / "README.md").read_text()
    listed = set(re.findall(r"\]\(([a-z0-9-]+\.md)\)", index))
    pages = {p.name for p in (REPO / "docs").glob("*.md")} - {"README.md"}
    assert pages <= listed, f"docs/README.md does not list {sorted(pages - listed)}"


def test_the_path_check_sees_a_missing_path(tmp_path):
    doc = REPO / "docs" / "README.md"
    names = {w for w, _ in named_paths(doc)}
    assert "configuration.md" in names
    fake = REPO / "docs" / ".check-me.md"
    fake.write_text("See `src/filter.rs` and [here](nowhere.md).\n")
    try:
        gone = [w for w, r in named_paths(fake) if not r.exists()]
    finally:
        fake.unlink()
    assert gone == ["nowhere.md", "src/filter.rs"]
    assert not written_by_a_command(REPO / "src" / "filter.rs")
    assert written_by_a_command(REPO / "tests" / "reliability" / "results" / "soak.json")  # make soak


# -- nothing outside the repository -----------------------------------------------------------------
# Spelled in pieces so that this file does not match itself.
OUTSIDE = [re.escape("../" + "shared"), re.escape("/" + "work/"), "spec " + "§", "behaviour" + r"\.md",
           r"\bspec\s+\d+\b"]


# Files other work is changing, with what still points outside in them. Each must still have its hit
# (the test fails when one is fixed, so the exception goes away with it); no new file may join.
KNOWN_OUTSIDE = {
    "bench/results/bench.json": "the benchmark record keeps the absolute paths of the run that made it",
}


def test_no_file_refers_to_anything_outside_the_repository():
    pattern = re.compile("|".join(OUTSIDE))
    hits = []
    for path in tracked():
        if "fuzz/corpus" in str(path) or path.suffix in (".wasm", ".png", ".tar", ".gz"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}")
    new = [h for h in hits if h.split(":", 1)[0] not in KNOWN_OUTSIDE]
    assert not new, ("files refer outside the repository (say it in docs/ and link the page):\n"
                     + "\n".join(new))
    fixed = set(KNOWN_OUTSIDE) - {h.split(":", 1)[0] for h in hits}
    assert not fixed, f"no longer refer outside the repository: remove them from KNOWN_OUTSIDE: {sorted(fixed)}"


# -- every counter and gauge is documented ----------------------------------------------------------
def documented_metrics() -> set[str]:
    """The metric names docs/ gives: `client_ip.x.y` in full, and `.z` after one, meaning the same
    prefix with z as the last part (`client_ip.rule.<name>.allowed`, `.denied`)."""
    names = set()
    for doc in sorted((REPO / "docs").glob("*.md")):
        prefix = None
        for token in re.findall(r"`([^`\s]+)`", doc.read_text()):
            if re.fullmatch(r"client_ip(\.[a-z_<>]+)+", token):
                names.add(token)
                prefix = token.rsplit(".", 1)[0]
            elif prefix and re.fullmatch(r"\.[a-z_]+", token):
                names.add(prefix + token)
    return names


# Every kind of counter: a rule, a source and an identity entry (link_invalid is defined only then).
ALL_METRICS_CONFIG = {
    "sources": {"feed": {"cluster": "no_such_cluster", "authority": "lists.example", "path": "/l.txt"}},
    "access": {"allow": ["203.0.113.0/24", "aws-vpce:vpce-0a1b2c3d4e5f60718"], "deny": ["source:feed"],
               "rules": [{"name": "admin", "path_prefixes": ["/admin"], "allow": ["10.20.0.0/16"]}]},
    "rate_limit": {},
}


def test_every_metric_the_filter_defines_in_envoy_is_documented(envoy_factory, wasm):
    env = envoy_factory(E.EnvoyOptions(configuration=ALL_METRICS_CONFIG))
    # Source metrics are defined as the configuration is taken: wait until they are.
    procs.wait_until(lambda: "client_ip.source.feed.age_s" in env.stats(), timeout=10,
                       what="the source's metrics in /stats")
    defined = {n for n in env.stats() if n.startswith("client_ip.")}
    general = {re.sub(r"^client_ip\.(rule|source)\.(admin|feed)\.", r"client_ip.\1.<name>.", n) for n in defined}
    assert {"client_ip.allowed", "client_ip.rule.<name>.denied", "client_ip.source.<name>.fetch_ok",
            "client_ip.link_invalid", "client_ip.rate_limit.keyed"} <= general, general
    undocumented = sorted(general - documented_metrics())
    assert not undocumented, f"metrics the filter defines that docs/ does not name: {undocumented}"


# -- the configuration-error examples are what the filter logs --------------------------------------
# Each example line of docs/errors.md, and a configuration that produces it.
ERROR_EXAMPLES = {
    'access.allow[2]: "10.0.0.300/8" is not an IP address or CIDR':
        {"access": {"allow": ["203.0.113.1", "203.0.113.2", "10.0.0.300/8"]}},
    "client_ip.trusted_hops: 2 cannot be combined with client_ip.trusted_proxies: choose one":
        {"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "trusted_hops": 2}},
    'access.rules[2].name: "a" is already the name of access.rules[0]':
        {"access": {"rules": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}},
    "acess: unknown key; expected one of: client_ip, access, forward, sources, geo, filter_type, rate_limit":
        {"acess": {}},
}


def test_configuration_error_examples_are_what_the_filter_logs(envoy_factory, wasm):
    text = (REPO / "docs" / "errors.md").read_text()
    shown = re.findall(r"^invalid configuration: (.*)$", text, re.M)
    assert shown, "docs/errors.md shows no `invalid configuration:` example"
    assert set(shown) == set(ERROR_EXAMPLES), (
        "docs/errors.md's examples and this test's table differ: give each example its configuration")
    for line in shown:
        refused = envoy_factory.refused(E.EnvoyOptions(configuration=ERROR_EXAMPLES[line]))
        assert refused.exit_status not in (None, 0), f"Envoy accepted the configuration of {line!r}"
        assert "invalid configuration: " + line in refused.log, (
            f"the filter did not log {line!r}; it logged:\n"
            + "\n".join(l for l in refused.log.splitlines() if "invalid configuration" in l))


# -- figures of the module's size -------------------------------------------------------------------
def test_module_size_figures_in_documents_are_the_measured_ones():
    """A paragraph about the module (`.wasm`, "module") that gives a size in KB or KiB gives one that
    BENCHMARKS.md measured (or a budget it states)."""
    bench = (REPO / "BENCHMARKS.md").read_text()
    # "N KiB" in its text, and the KiB column of its tables (decimal figures).
    measured = set(re.findall(r"(\d+(?:\.\d+)?) KiB", bench)) | set(re.findall(r"\| (\d+\.\d+) \|", bench))
    wrong = []
    for doc in documents():
        if doc.name == "BENCHMARKS.md":
            continue
        for para in re.split(r"\n\s*\n", doc.read_text()):
            if ".wasm" not in para and "module" not in para:
                continue
            for figure, unit in re.findall(r"(\d+(?:\.\d+)?)\s?(KB|KiB)\b", para):
                if figure not in measured:
                    wrong.append(f"{doc.relative_to(REPO)}: {figure} {unit}")
    assert not wrong, f"module sizes BENCHMARKS.md does not have: {wrong}"
