"""``robustcnn.Report``: a report directory read back (``results.report``) with what needs the check
registry on top: each check's headline, a one-row summary per model, and models side by side.

``report_files()`` names the rendered files of a report directory (``summary.md``, ``report.html``)
and their renderers; the callers above the runner hand them to ``results.writer.write_report``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import InvalidInputError
from ..results import report as stored

if TYPE_CHECKING:
    from ..checks import Headline


class Report(stored.Report):
    """``table``: the long results table; ``samples``: per-sample records; ``meta``: meta.json."""

    @classmethod
    def of(cls, report: stored.Report) -> Report:
        """The same report (e.g. the one the runner returns) with the methods below."""
        return report if isinstance(report, cls) else cls(report.path, report.table, report.samples, report.meta)

    def headlines(self) -> dict[str, Headline]:
        """``{check: Headline}``: each check's headline number, from the check class."""
        return headlines(self)

    def summary(self) -> pd.DataFrame:
        """A wide one-row view of this model: one column per check headline."""
        values = {h.label: h.value for h in self.headlines().values()}
        return pd.DataFrame([values], index=pd.Index([self.model], name="model"))

    @staticmethod
    def compare(reports: Iterable[stored.Report | str | Path], full: bool = False) -> pd.DataFrame:
        """Models side by side, as ``robustcnn report compare``: one row per check headline
        (``full=True``: per table row), one value column per model, then deltas to the first."""
        from .compare import compare_headlines, compare_tables

        loaded = _loaded(reports)
        if not loaded:
            raise InvalidInputError("nothing to compare: give at least one report directory")
        return compare_tables(loaded) if full else compare_headlines(loaded)

    @staticmethod
    def summaries(reports: Iterable[stored.Report | str | Path]) -> pd.DataFrame:
        """The ``summary()`` rows of several reports in one frame: one row per model."""
        return pd.concat([r.summary() for r in _loaded(reports)], sort=False)


def headlines(report: stored.Report) -> dict[str, Headline]:
    """``{check: Headline}`` of a report: each registered check's headline number of its rows."""
    from ..checks import load_registry

    registry = load_registry()
    result = {}
    for check in dict.fromkeys(report.table["check"]):
        cls = registry.get(check)
        headline = cls().headline(report.check_table(check)) if cls is not None else None
        if headline is not None:
            result[check] = headline
    return result


def report_files() -> dict[str, Callable[[stored.Report], str]]:
    """The rendered files of a report directory and their renderers, for ``write_report``."""
    from .html import render_html
    from .markdown import render_summary

    return {"summary.md": render_summary, "report.html": render_html}


def _loaded(reports: Iterable[stored.Report | str | Path]) -> list[Report]:
    return [Report.of(r) if isinstance(r, stored.Report) else Report.load(r) for r in reports]
