"""report.html in a real browser: headless Chromium loads it without console errors, scripts
from data do not run, and the screenshot is not blank. Skipped when Chromium is absent."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from test_html_helpers import line_png, write_synthetic

import robustcnn
from robustcnn.reports.html import render_html
from robustcnn.results.schema import combine, rate, tidy
from robustcnn.results.writer import write_report

pytestmark = pytest.mark.browser


def chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


CHROMIUM = chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)"
)


def load_page(page: Path, tmp_path: Path) -> tuple[str, list[str], np.ndarray]:
    """Open ``page`` headless: the DOM after scripts ran, the console messages, the screenshot."""
    shot = tmp_path / "shot.png"
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,1600",
        f"--screenshot={shot}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console, matplotlib.image.imread(shot)


def assert_not_blank(pixels: np.ndarray) -> None:
    rgb = pixels[..., :3]
    dark = (rgb.mean(axis=2) < 0.5).mean()
    assert rgb.std() > 0.05 and 0.002 < dark < 0.6, (rgb.std(), dark)


@needs_chromium
def test_console_errors_are_caught(tmp_path):
    """The control: a page that logs an error and breaks CSP is seen as failing."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('boom'); missing();</script></body></html>"
    )
    _, console, _ = load_page(bad, tmp_path)
    assert any("boom" in line for line in console) and any("missing" in line for line in console)


@needs_chromium
def test_synthetic_report_in_browser(tmp_path):
    report = write_synthetic(tmp_path / "demo")
    dom, console, pixels = load_page(report.path / "report.html", tmp_path)
    assert console == []
    assert "<title>robustcnn audit: demo-model</title>" in dom  # the onerror payload did not run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert dom.count("data:image/png;base64,") == 2
    assert_not_blank(pixels)


@needs_chromium
@pytest.mark.slow
def test_demo_audit_page_shows_every_check_with_figures(tmp_path):
    report = robustcnn.audit(
        model="demo:mnist-cnn",
        data="mnist5k",
        checks=["clean", "fooling-gradient"],
        n=30,
        out=tmp_path / "demo",
        seed=0,
        options={"fooling-gradient": {"classes": [0, 1], "steps": 10, "prototype_steps": 5}},
    )
    page = report.path / "report.html"
    assert page.read_text() == render_html(report)
    dom, console, pixels = load_page(page, tmp_path)
    assert console == []
    for check in ("clean", "fooling-gradient"):
        assert f'<section id="check-{check}">' in dom
    figures = sum(len(v) for v in report.figures.values())
    assert figures >= 1 and dom.count("data:image/png;base64,") == figures
    assert_not_blank(pixels)


# Reads the laid-out page: the scorecard's own and its ancestors' overflow, its rows, every image.
PROBE = """
var card = document.querySelector("div.scorecard");
var clipped = [];
for (var el = card; el && el !== document.documentElement; el = el.parentElement) {
  var style = getComputedStyle(el);
  if (el.scrollHeight > el.clientHeight + 1 && /(auto|scroll|hidden)/.test(style.overflowY + style.overflow)) {
    clipped.push(el.tagName + "." + el.className);
  }
}
var box = card.getBoundingClientRect();
var images = Array.prototype.slice.call(document.images);
document.getElementById("rc-probe").textContent = JSON.stringify({
  clipped: clipped,
  rows: card.querySelectorAll("tbody tr").length,
  top: box.top + window.scrollY,
  bottom: box.bottom + window.scrollY,
  page: document.documentElement.scrollHeight,
  images: images.length,
  broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length
});
"""


def with_probe(page: Path, out: Path, css: str = "") -> Path:
    """A copy of ``page`` that runs PROBE (its hash added to the page's script-src) and ``css``."""
    digest = "sha256-" + base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    text = page.read_text(encoding="utf-8").replace("script-src '", f"script-src '{digest}' '", 1)
    text = text.replace("</style>", css + "</style>", 1)
    text = text.replace("</body>", f'<pre id="rc-probe"></pre><script>{PROBE}</script></body>', 1)
    out.write_text(text, encoding="utf-8")
    return out


def measure(page: Path, tmp_path: Path, height: int, shot: Path | None = None) -> dict:
    """The probe's findings after layout (and a screenshot of a ``height``-pixel tall window)."""
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size=1280,{height}",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=3000",
        "--dump-dom",
        *([f"--screenshot={shot}"] if shot else []),
        page.resolve().as_uri(),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="rc-probe">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1), "the probe did not run"
    return json.loads(html.unescape(found.group(1)))


def text_bands(pixels: np.ndarray) -> int:
    """Horizontal bands of rows holding dark (text) pixels, separated by rows without any."""
    inked = (pixels[..., :3].mean(axis=2) < 0.45).any(axis=1)
    return int(np.sum(inked[1:] & ~inked[:-1]) + inked[0])


def long_report(out: Path) -> Path:
    """The synthetic report plus 14 checks (scorecard rows) not in the registry, each with a figure."""
    report = write_synthetic(out / "base")
    extra = [tidy([rate("robust_accuracy", 50 + k, 100)], "demo-model", f"plug-in-{k:02d}") for k in range(14)]
    table = combine([report.table, *extra])
    meta = dict(report.meta)
    meta["checks"] = {**meta["checks"], **{f"plug-in-{k:02d}": {"status": "complete"} for k in range(14)}}
    figures = {c: {n: p.read_bytes() for n, p in f.items()} for c, f in report.figures.items()}
    figures["plug-in-03"] = {"curve": line_png(0.5)}
    write_report(out / "long", table, report.samples, meta, figures)
    return out / "long" / "report.html"


@needs_chromium
def test_full_page_scorecard_is_not_clipped_and_images_load(tmp_path):
    """A full-page screenshot (a window as tall as the page) of a report with a 16-row scorecard:
    no box around the scorecard scrolls or hides rows, every row is drawn, and every image loads."""
    page = with_probe(long_report(tmp_path), tmp_path / "probed.html")
    first = measure(page, tmp_path, 900)
    assert first["rows"] == 16 and first["clipped"] == [] and first["images"] == 3 and first["broken"] == 0
    height = int(first["page"])
    shot = tmp_path / "full.png"
    found = measure(page, tmp_path, height, shot)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] == height and found["bottom"] <= height
    assert_not_blank(pixels)
    card = pixels[int(found["top"]) : int(found["bottom"]) + 1]
    assert text_bands(card) >= found["rows"] + 1  # the header and every row have ink in the screenshot


@needs_chromium
def test_the_probe_sees_a_scroll_box_and_a_broken_image(tmp_path):
    """The control: the same page with a short scrolling scorecard box and one corrupt image."""
    page = long_report(tmp_path)
    broken = page.read_text(encoding="utf-8").replace('src="data:image/png;base64,', 'src="data:image/png;base64,AA', 1)
    page.write_text(broken, encoding="utf-8")
    probed = with_probe(page, tmp_path / "probed.html", css="div.scorecard { max-height: 120px; overflow: auto; }")
    found = measure(probed, tmp_path, 900)
    assert found["clipped"] == ["DIV.scorecard"] and found["broken"] == 1
