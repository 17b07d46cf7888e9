"""The option tables of docs/checks/*.md, generated from the checks' option declarations.

Each table sits between ``<!-- options:NAME -->`` and ``<!-- /options -->``; ``render`` rewrites
that text from ``robustcnn.options``, so the docs say what the code checks. Run
``python -m robustcnn.docs_gen`` after changing an option (``--check`` only reports stale files,
exit 1, as the tests do).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .checks import Check, load_registry
from .options import COLUMNS, option_rows, rules_of

DOCS = Path(__file__).resolve().parents[1] / "docs" / "checks"
BLOCK = re.compile(r"(?P<open><!-- options:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<close><!-- /options -->)", re.S)


def options_markdown(check: type[Check]) -> str:
    """The option table of ``check`` in markdown, with its cross-option rules below it."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in option_rows(check.Config):
        cells = [_cell(row[c], code=c in ("option", "type", "default", "range/choices")) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    rules = [rule.describe() for rule in rules_of(check.Config)]
    if rules:
        lines += ["", "Also checked: " + "; ".join(rules) + "."]
    return "\n".join(lines) + "\n"


def _cell(text: str, code: bool) -> str:
    if not text:
        return ""
    return (f"`{text}`" if code else text).replace("|", "\\|")


def render(text: str, registry: dict[str, type[Check]]) -> str:
    """``text`` with every marked option table regenerated; an unknown check name is an error."""

    def table(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in registry:
            raise KeyError(f"<!-- options:{name} --> names no registered check")
        return match["open"] + options_markdown(registry[name]) + match["close"]

    return BLOCK.sub(table, text)


def stale(folder: Path = DOCS) -> dict[Path, str]:
    """The markdown files under ``folder`` whose option tables differ from the declarations, with the new text."""
    registry = load_registry()
    changed = {}
    for path in sorted(folder.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        new = render(text, registry)
        if new != text:
            changed[path] = new
    return changed


def main(argv: list[str]) -> int:
    changed = stale()
    for path, text in changed.items():
        if "--check" in argv:
            print(f"stale option table: {path}")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"rewrote {path}")
    return 1 if changed and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
