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


def test_the_hostile_json_and_retired_tables_come_from_their_text_records(tmp_path, monkeypatch):
    text = (REPO / "RELIABILITY.md").read_text()
    for name in ("hostile_json.table", "retired.table"):
        table = figures.FIGURES[name]()
        assert not table.startswith("not recorded"), name
        assert table in text, name
    # A typed cell over the record is caught.
    cell = "| replaced configurations emptied | 0 of "
    assert cell in text
    typed = text.replace(cell, "| replaced configurations emptied | 1 of ", 1)
    assert [p.split(" shows")[0] for p in figures.text_problems("RELIABILITY.md", typed)] == [
        "RELIABILITY.md: figure retired.table"]
    # Without the records, they say so.
    monkeypatch.setattr(figures, "RETIRED_RECORD", tmp_path / "absent.txt")
    monkeypatch.setattr(figures, "HOSTILE_RECORD", tmp_path / "absent.txt")
    assert figures.FIGURES["retired.table"]() == "not recorded (run `make retired`)"
    assert figures.FIGURES["hostile_json.table"]() == "not recorded (run `make hostile-json`)"


def test_the_retired_figures_follow_the_record(tmp_path, monkeypatch):
    record = tmp_path / "retired.txt"
    record.write_text(
        "$ tests/reliability/retired.py --reconfigs 2 --settle 9 --concurrency 2   # now, commit abc\n"
        "configuration 0 loaded: rss 100.0 MiB, allocated 10.0 MiB, heap 1.0 MiB\n"
        "configuration 1 loaded: rss 110.0 MiB, allocated 11.0 MiB, heap 1.0 MiB\n"
        "configuration 2 loaded: rss 120.0 MiB, allocated 12.0 MiB, heap 1.0 MiB\n"
        "9 s after the last: rss 105.0 MiB, allocated 3.5 MiB, heap 1.0 MiB\n"
        "replaced configurations emptied: 2 of 2 (2 log lines)\n")
    monkeypatch.setattr(figures, "RETIRED_RECORD", record)
    table = figures.FIGURES["retired.table"]()
    assert "| RSS after 2 reconfigurations |" in table and "| 120.0 MiB |" in table
    assert "| allocated 9 s after the last |" in table and "| 3.5 MiB |" in table
    assert figures.FIGURES["retired.after_run"]() == "now, commit abc"


def test_the_refresh_adoption_and_gradual_drain_figures_come_from_their_records(tmp_path, monkeypatch):
    import json
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    for name, command in (("refresh.table", "make refresh"), ("adoption.summary", "make adoption"),
                          ("reconfig.gradual", "make reconfig")):
        assert figures.FIGURES[name]() == f"not recorded (run `{command}`)"
    cls = {"completed": 10, "errors": {}, "latency_us": {"p50": 512, "p99": 4096}}
    (tmp_path / "refresh.json").write_text(json.dumps({
        "duration_s": 30.0, "flip_s": 10.0, "concurrency": 2, "body_bytes": 12_806_142,
        "flips_written": 2, "versions_adopted": 2, "x_status_changes": 4, "y_status_changes": 4,
        "worst_latency_during_refresh_ms": 12.5, "slow_during_refresh": 0,
        "worst_latency_outside_refresh_ms": 3.0, "slow_outside_refresh": 0, "list_server_requests": 3,
        "classes": {"X": cls, "Y": cls}, "memory": {"vmrss_kb": 204800}, "checks": [{"check": "a", "ok": True}]}))
    table = figures.FIGURES["refresh.table"]()
    assert "| requests | 20 (X 10 / Y 10), 0 failed |" in table
    assert "| worst latency during a refresh | 12.5 ms (0 responses of 20 ms or more) |" in table
    assert "| Envoy RSS at the end | 200 MiB |" in table
    assert figures.FIGURES["refresh.body"]() == "12.8 MB"
    (tmp_path / "adoption.json").write_text(json.dumps({
        "label": "commit abc", "wasm": "make build", "date": "now", "refreshes": 5, "adoptions": 10,
        "read_ms": {"min": 1, "median": 2, "max": 3}, "decoded_ms": {"min": 20, "median": 25.5, "max": 40},
        "load_average": {"start": 0.5, "end": 0.7}}))
    assert figures.FIGURES["adoption.summary"]().endswith(
        "read 1–3 ms (median 2), opened and decoded 20–40 ms (median 25.5)")
    (tmp_path / "reconfig-gradual.json").write_text(json.dumps({
        "errors": {"A": 18, "B": 18}, "pushes": [{"expect": "A"}] * 6 + [{"expect": None}] * 3,
        "effect_s": {"min": 1.015, "max": 1.065}, "conns_per_client": 3,
        "requests_per_client": {"A": 1, "B": 1}}))
    assert figures.FIGURES["reconfig.gradual"]() == (
        "the new policy took effect in 1.015–1.065 s, and 36 requests failed (6 good pushes, "
        "6 connections under load)")


def test_make_reliability_runs_every_driver_that_writes_a_record():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nreliability:", 1)[1].split("\n\n", 1)[0]
    for target in ("hostile-json", "differential", "geo-differential", "adoption", "reconfig", "soak", "refresh", "retired",
                   "rate-limit-load", "fuzz"):
        assert f" {target}" in recipe or f'"{target} ' in recipe, target
    assert "tools/figures.py --write" in recipe
    v = figures.make_vars()
    for name in ("RELIABILITY_SOAK_SECONDS", "RELIABILITY_REFRESH_SECONDS", "RELIABILITY_FUZZ_SECONDS",
                 "RELIABILITY_RETIRED_RECONFIGS"):
        assert v[name].isdigit(), name


def test_the_fuzz_corpus_size_is_counted_from_the_tree():
    files = [p for p in (REPO / "fuzz" / "corpus").rglob("*") if p.is_file()]
    assert figures.FIGURES["fuzz.corpus"]().startswith(f"{len(files):,} files, about ")
    assert f"<!-- fig:fuzz.corpus -->{figures.FIGURES['fuzz.corpus']()}<!-- /fig -->" in \
        (REPO / "RELIABILITY.md").read_text()


def test_the_instructions_record_holds_every_case_measured_over_its_requests():
    """bench/results/instructions.json (make bench-instructions): each case's instructions per
    request, (A)'s divided by it, over the recorded number of requests, with the load it ran under."""
    rec = figures.load(figures.INSTRUCTIONS_RECORD)
    assert rec is not None, "bench/results/instructions.json is missing: run `make bench-instructions`"
    assert rec["requests"] >= 1000 and rec["warmup"] >= 100
    assert len(rec["commit"]) == 40 and len(rec["load_before"]) == 3 and len(rec["load_after"]) == 3
    assert {"A", "DM-NOOP", "DM-CALLS", "DM-C", "F10"} <= set(rec["cases"])
    a = rec["cases"]["A"]["ir_per_request"]
    for name, case in rec["cases"].items():
        assert case["ir_per_request"] == case["ir_total"] / rec["requests"], name
        assert abs(case["a_over_case"] - a / case["ir_per_request"]) < 1e-9, name
    # A filter that does nothing still costs something; the native build costs more than doing nothing.
    assert a < rec["cases"]["DM-NOOP"]["ir_per_request"] < rec["cases"]["DM-C"]["ir_per_request"]


def test_the_instructions_table_in_benchmarks_md_comes_from_its_record(tmp_path, monkeypatch):
    rec = figures.load(figures.INSTRUCTIONS_RECORD)
    text = (REPO / "BENCHMARKS.md").read_text()
    dm_c = rec["cases"]["DM-C"]
    row = f"| DM-C | {dm_c['what']} | {dm_c['ir_per_request'] / 1000:,.1f}k | {dm_c['a_over_case']:.2f}× |"
    assert row in text
    assert figures.FIGURES["bench.native.instr_vs_a"]() == f"{dm_c['a_over_case']:.2f}×"
    # A record with another figure renders another table, which BENCHMARKS.md then disagrees with.
    import json
    changed = json.loads(json.dumps(rec))
    changed["cases"]["DM-C"]["a_over_case"] = 0.5
    record = tmp_path / "instructions.json"
    record.write_text(json.dumps(changed))
    monkeypatch.setattr(figures, "INSTRUCTIONS_RECORD", record)
    assert "| 0.50× |" in figures.bench_document()
    assert "BENCHMARKS.md differs from what bench/results/bench.json (and instructions.json) render " \
        "(run `make docs-figures`)" in figures.problems()
    # Without the record, the figures say so and BENCHMARKS.md has no such section.
    monkeypatch.setattr(figures, "INSTRUCTIONS_RECORD", tmp_path / "absent.json")
    assert figures.FIGURES["bench.native.instr_vs_a"]() == "not recorded (run `make bench-instructions`)"
    assert "Instructions per request" not in figures.bench_document()


def test_make_bench_runs_the_instructions_stage():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert "bench-instructions" in recipe
    stage = makefile.split("\nbench-instructions:", 1)[1].split("\n\n", 1)[0]
    assert "bench/instructions.py" in stage and "valgrind" in stage.splitlines()[0]
