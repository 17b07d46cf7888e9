"""report.html in a real browser: headless Chromium loads it without console errors, scripts
from data do not run, and the screenshot is not blank. Skipped when Chromium is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from test_html_helpers import write_synthetic

import robustcnn
from robustcnn.reports.html import render_html

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
