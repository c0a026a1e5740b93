"""The workspace's layout rules (docs/internals.md): no production source file over 700 lines, in
any crate of the repository (the core in src/, the adapters in adapters/*/src, and the small crates
of the benches, tools and tests, each directory holding a Cargo.toml).

Production lines are a file's lines before its inline test module (`#[cfg(test)]` followed by
`mod tests`); files that hold only tests (`tests.rs`, `*_tests.rs`, `testutil.rs`) are not counted.
"""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT = 700
TEST_ONLY = re.compile(r"(^|_)tests\.rs$|^testutil\.rs$")


def production_lines(text: str) -> int:
    """Lines of `text` before its inline `#[cfg(test)] mod tests { ... }` block, if any."""
    lines = text.split("\n")
    for i, line in enumerate(lines[:-1]):
        if line.strip() == "#[cfg(test)]" and re.match(r"\s*mod tests\s*\{", lines[i + 1]):
            return i
    return len(lines)


def test_production_lines_counts_up_to_the_inline_test_module():
    text = "fn a() {}\n" * 3 + "#[cfg(test)]\nmod tests {\n    fn t() {}\n}\n"
    assert production_lines(text) == 3
    assert production_lines("fn a() {}\n#[cfg(test)]\nmod tests;\n") == 4


def crate_sources() -> list[Path]:
    """The production .rs files of every crate: each Cargo.toml's src/ (and fuzz/'s targets)."""
    manifests = [p for p in REPO.rglob("Cargo.toml")
                 if not {"target", ".venv", ".work"} & set(p.relative_to(REPO).parts)]
    files = set()
    for manifest in manifests:
        for folder in ("src", "fuzz_targets"):
            files.update(p for p in (manifest.parent / folder).rglob("*.rs") if not TEST_ONLY.search(p.name))
    return sorted(files)


def test_every_crate_is_checked():
    folders = {str(p.relative_to(REPO)).split("/src/")[0] for p in crate_sources() if "/src/" in str(p)}
    assert {"adapters/proxy-wasm", "adapters/dynamic-module", "bench/noop-filter"} <= folders, folders
    assert any(p.parent == REPO / "src" for p in crate_sources()), "the core's src/ not found"


def test_no_production_source_file_is_over_700_lines():
    files = crate_sources()
    assert len(files) > 40, "src/ and adapters/ not found or nearly empty"
    over = {str(p.relative_to(REPO)): n for p in files
            if (n := production_lines(p.read_text())) > LIMIT}
    assert not over, f"production files over {LIMIT} lines (split them by concept): {over}"
