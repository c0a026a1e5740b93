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
