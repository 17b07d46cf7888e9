"""report.html, summary.md and the scorecard, on synthetic report directories."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest
from test_html_helpers import EVIL, SCRIPT_CLASS, write_synthetic

from robustcnn.checks.accuracy.clean import CleanCheck
from robustcnn.reports import html as html_module
from robustcnn.reports.gates import evaluate, parse_gates
from robustcnn.reports.html import render_html, styled_table
from robustcnn.reports.markdown import append_step_summary, md_table, render_summary
from robustcnn.reports.scorecard import scorecard, scorecard_text
from robustcnn.results.report import Report


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def elements(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(page)
    return parser.tags


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Report:
    return write_synthetic(tmp_path_factory.mktemp("report") / "demo")


@pytest.fixture(scope="module")
def page(report) -> str:
    return render_html(report)


def test_writer_writes_page_and_summary(report):
    assert (report.path / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "## Scorecard" in (report.path / "summary.md").read_text()


def test_page_is_self_contained_with_every_figure_inline(report, page):
    tags = elements(page)
    images = [a["src"] for t, a in tags if t == "img"]
    files = [p for named in report.figures.values() for p in named.values()]
    assert len(images) == len(files) == 2
    inline = {base64.b64decode(src.split(",", 1)[1]) for src in images}
    assert inline == {p.read_bytes() for p in files}
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not [t for t, a in tags if t in ("link", "iframe", "object", "embed")]
    refs = [a.get(k) for t, a in tags for k in ("src", "href") if a.get(k)]
    assert all(r.startswith(("data:", "#")) for r in refs), refs
    policy = [a["content"] for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert policy and "default-src 'none'" in policy[0] and "unsafe-inline" not in policy[0].split("script-src")[1]


def test_text_from_data_is_escaped(page):
    assert SCRIPT_CLASS not in page and EVIL not in page and "<b>grid" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;grid" in page
    tags = elements(page)
    assert [t for t, _ in tags].count("script") == 1
    assert not [(t, k) for t, a in tags for k in a if k.startswith("on")]


def test_one_section_per_check_with_class_text(page):
    sections = re.findall(r'<section id="([^"]+)">', page)
    assert sections == ["check-clean", "check-mystery"]
    clean = page.split('<section id="check-clean">')[1].split("</section>")[0]
    for text in (CleanCheck.title, CleanCheck.description.split(".")[0], CleanCheck.reference):
        assert text in clean
    assert 'class="rc-table"' in clean and "class_accuracy: 3 rows" in clean  # per-class rows folded
    assert "[0.8256, 0.9448]" in clean  # 95% CI of 90/100 in one column
    mystery = page.split('<section id="check-mystery">')[1].split("</section>")[0]
    assert "robust_accuracy" in mystery and "data:image/png" in mystery


def test_scorecard_uses_check_headlines_and_gate_verdicts(report):
    gates = parse_gates(
        [
            {"check": "clean", "metric": "accuracy", "min": 0.95},
            {"check": "clean", "metric": "mean_confidence", "max": 0.99},
        ]
    )
    card = scorecard(report, evaluate(gates, report))
    clean = card.set_index("check").loc["clean"]
    assert (clean["headline"], clean["value"], clean["gate"], clean["status"]) == (
        "clean accuracy",
        0.9,
        "fail",
        "complete",
    )
    mystery = card.set_index("check").loc["mystery"]
    assert mystery["note"] == "check not in the registry" and mystery["gate"] == ""
    assert list(card["check"]) == ["clean", "mystery"]
    assert "clean accuracy" in scorecard_text(card)


def test_scorecard_reports_a_broken_headline(report, monkeypatch):
    def broken(self, table):
        raise KeyError("accuracy")

    monkeypatch.setattr(CleanCheck, "headline", broken)
    clean = scorecard(report).set_index("check").loc["clean"]
    assert clean["note"].startswith("headline failed: KeyError") and clean["value"] != clean["value"]


def test_page_shows_gate_verdicts(report):
    results = evaluate(
        parse_gates([{"check": "clean", "metric": "accuracy", "min": 0.95, "name": "acc <gate>"}]), report
    )
    page = render_html(report, results)
    assert '<h2 id="gates">Gates</h2>' in page
    assert '<span class="badge fail">fail</span>' in page and "acc &lt;gate&gt;" in page


def test_unreadable_figure_is_noted(tmp_path):
    report = write_synthetic(tmp_path / "r")
    (report.path / "figures" / "clean" / "broken.png").write_bytes(b"not a png")
    page = render_html(report)
    assert "figure is not a PNG file" in page and len(re.findall(r'src="data:image/png', page)) == 2


def test_long_tables_are_cut(report, monkeypatch):
    table = report.table[report.table["check"] == "mystery"]
    assert styled_table(table, limit=3).count("<tr>") == 4  # header + 3 rows
    assert "Long tables show" not in render_html(report)
    monkeypatch.setattr(html_module, "MAX_TABLE_ROWS", 5)
    mystery = render_html(report).split('<section id="check-mystery">')[1]
    assert "Long tables show their first 5 rows" in mystery and "robust_accuracy: 3 rows" in mystery


def test_summary_markdown(report):
    results = evaluate(
        parse_gates(
            [
                {"check": "clean", "metric": "mean_confidence", "max": 0.99, "name": "confidence ok"},
                {"check": "clean", "metric": "accuracy", "min": 0.95, "name": "accuracy high"},
            ]
        ),
        report,
    )
    text = render_summary(report, results)
    assert text.index("## Gates") < text.index("## Scorecard") < text.index("### clean")
    assert text.index("accuracy high") < text.index("confidence ok")  # failures first
    assert "| accuracy | clean | clean accuracy | 90% (83–94) |" in text
    assert SCRIPT_CLASS not in text and "class_accuracy" not in text.split("### clean")[1].split("###")[0]
    assert "more rows in results.csv" in text
    assert md_table(report.table.head(0)) == "_(no rows)_\n"
    assert "a \\| b" in md_table(report.table.head(1).assign(metric="a | b"))


def test_append_step_summary(tmp_path):
    target = tmp_path / "step.md"
    assert append_step_summary("x", env={}) is None
    append_step_summary("first", env={"GITHUB_STEP_SUMMARY": str(target)})
    append_step_summary("second\n", env={"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text() == "first\nsecond\n"


def test_header_time_counts_resumed_work_and_this_run():
    from robustcnn.reports.html import _time_facts

    assert _time_facts({"seconds": 41.0, "work_seconds": 270.0}) == [("work", "270.0 s"), ("this run", "41.0 s")]
    assert _time_facts({"seconds": 3.0}) == [("time", "3.0 s")]
    assert _time_facts({}) == []
