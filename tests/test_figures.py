"""Every figure in the documents comes from a run recorded in the repository (tools/figures.py):
BENCHMARKS.md is what bench/results/bench.json renders, and each marked figure in README.md,
RELIABILITY.md and docs/ is what its record (a results file, or the spoofing corpus itself) gives.
A document edited by hand, or a record replaced without `make docs-figures`, fails here."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import figures  # noqa: E402


def test_every_document_figure_agrees_with_its_record():
    assert figures.problems() == []


def test_a_figure_typed_over_its_record_is_caught():
    text = (REPO / "RELIABILITY.md").read_text()
    cases = figures.FIGURES["spoof.cases"]()
    marked = f"<!-- fig:spoof.cases -->{cases}<!-- /fig -->"
    assert marked in text
    typed = text.replace(marked, "<!-- fig:spoof.cases -->84<!-- /fig -->", 1)
    assert figures.text_problems("RELIABILITY.md", typed) == [
        f"RELIABILITY.md: figure spoof.cases shows '84', its record gives '{cases}'"]


def test_the_spoofing_corpus_figures_are_counted_from_the_corpus():
    sys.path.insert(0, str(REPO / "tests"))
    import test_spoofing_corpus as corpus
    assert figures.FIGURES["spoof.cases"]() == str(len(corpus.CASES))
    assert int(figures.FIGURES["spoof.refused"]()) + int(figures.FIGURES["spoof.admitted"]()) == \
        len(corpus.CASES)


def test_a_figure_without_a_record_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "FUZZ_RECORD", tmp_path / "absent.json")
    assert figures.FIGURES["fuzz.summary"]() == "not recorded (run `make fuzz`)"


def test_benchmarks_md_is_rendered_from_the_record_alone():
    """BENCHMARKS.md can be regenerated from bench/results/bench.json (no run needed)."""
    rendered = figures.bench_document()
    assert rendered is not None, "bench/results/bench.json is missing: run `make bench`"
    assert rendered == (REPO / "BENCHMARKS.md").read_text()


def test_the_corpus_groups_table_is_counted_from_the_corpus():
    sys.path.insert(0, str(REPO / "tests"))
    import test_spoofing_corpus as corpus
    groups = figures.corpus_groups()
    assert len(groups) >= 9
    assert sum(n for _, n in groups) == len(corpus.CASES)
    table = figures.FIGURES["spoof.groups"]()
    assert f"| **total** | **{len(corpus.CASES)}** |" in table


def test_a_corpus_group_count_typed_over_the_corpus_is_caught():
    text = (REPO / "RELIABILITY.md").read_text()
    (title, n), = figures.corpus_groups()[:1]
    row = f"| 1. {title} | {n} |"
    assert row in text
    typed = text.replace(row, f"| 1. {title} | {n + 1} |", 1)
    (problem,) = figures.text_problems("RELIABILITY.md", typed)
    assert problem.startswith("RELIABILITY.md: figure spoof.groups shows")


def test_the_timings_follow_the_makefile_variables(monkeypatch):
    v = figures.make_vars()
    n = len(v["FUZZ_TARGETS"].split())
    assert f"{n} targets × {v['FUZZ_SECONDS']} s" in figures.FIGURES["timings.table"]()
    text = (REPO / "RELIABILITY.md").read_text()
    typed = text.replace(f"{n} targets × {v['FUZZ_SECONDS']} s", "3 × 300 s", 1)
    assert typed != text
    assert [p.split(" shows")[0] for p in figures.text_problems("RELIABILITY.md", typed)] == [
        "RELIABILITY.md: figure timings.table"]
    monkeypatch.setattr(figures, "make_vars", lambda: dict(v, FUZZ_TARGETS="a b c", FUZZ_SECONDS="60"))
    assert "3 targets × 60 s" in figures.FIGURES["timings.table"]()


def test_the_soak_and_reconfig_tables_without_a_record_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    assert figures.FIGURES["soak.table"]() == "not recorded (run `make soak`)"
    assert figures.FIGURES["reconfig.table"]() == "not recorded (run `make reconfig`)"


def test_the_soak_table_is_rendered_from_its_record(tmp_path, monkeypatch):
    import json
    rec = {"sent_per_class": {"allowed-keepalive": 1234}, "statuses_per_class": {"allowed-keepalive": {"200": 1234}},
           "errors_per_class": {}, "latency_us_per_class": {"allowed-keepalive": {"p50": 500, "p99": 2500}},
           "connections_per_class": {"allowed-keepalive": 4}, "filter_counters_delta": {"client_ip.allowed": 1234},
           "app_requests_delta": 1234, "memory_start": {"vmrss_kb": 100}, "memory_end": {"vmrss_kb": 101},
           "checks": {"a": True}}
    (tmp_path / "soak.json").write_text(json.dumps(rec))
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    table = figures.FIGURES["soak.table"]()
    assert "| allowed-keepalive | 4 | 1,234 | 200: 1,234 | 0 | ≤ 0.5 / ≤ 2.5 ms |" in table
    assert "all 1 checks held" in table


def test_the_differential_line_comes_from_its_record(tmp_path, monkeypatch):
    record = tmp_path / "ipset-differential.txt"
    monkeypatch.setattr(figures, "DIFF_RECORD", record)
    assert figures.FIGURES["diff.last_run"]() == "not recorded (run `make differential`)"
    record.write_text("$ make differential   # now\nipset differential: 7 lists, 90 lookups, 60 inside, 30 outside\n")
    assert figures.FIGURES["diff.last_run"]().startswith("7 lists, 90 lookups (60 inside, 30 outside)")
