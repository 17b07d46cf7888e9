"""Write a report directory so that it is complete or visibly incomplete, never half-written,
and never touch a file robustcnn did not write.

A run works in a staging folder beside the report, ``.<name>.robustcnn-staging/``: completed
fragments (what ``--resume`` reuses) and then the report files go there. At the end the staging
folder is renamed to ``--out`` in one step when ``--out`` is new or empty. Over an earlier report
the files are swapped one by one: an ``INCOMPLETE`` marker goes in first and ``meta.json``
(``status = "complete"``, listing every file the report owns) comes last, so a crash in between
leaves a folder that says it is incomplete. Only the files the earlier ``meta.json`` lists are
removed; anything else in ``--out`` is left alone.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows: no advisory locks; concurrent runs are not detected)
    fcntl = None  # type: ignore[assignment]

from ..errors import EnvironmentProblemError, InvalidInputError, os_errors
from .report import Report
from .schema import parquet_safe

STAGING_SUFFIX = ".robustcnn-staging"
STAGING_MARKER = ".robustcnn-staging"
INCOMPLETE = "INCOMPLETE"
FRAGMENTS = ".fragments"
# what a report written before meta.json listed its files holds
LEGACY_FILES = (
    "results.parquet",
    "results.csv",
    "samples.parquet",
    "summary.md",
    "report.html",
    "meta.json",
    "figures",
    FRAGMENTS,
)
REPORT_NAMES = frozenset(LEGACY_FILES) | {INCOMPLETE, STAGING_MARKER}
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev")
INCOMPLETE_TEXT = (
    "This robustcnn report is incomplete: a run stopped while replacing its files.\n"
    "Do not use results.csv or summary.md from this folder; rerun the audit (add --resume to reuse finished work).\n"
)


class Staging:
    """The staging folder of one run: ``fragments`` for completed work, then the report files."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = staging_path(out)
        self._lock: int | None = None

    def lock(self) -> None:
        """Hold the staging folder for this run: a second run on the same ``out`` is refused."""
        self._lock = os.open(self.path / STAGING_MARKER, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise EnvironmentProblemError(
                f"another robustcnn run is writing {self.out}; wait for it to finish or choose another --out"
            ) from None

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @property
    def fragments(self) -> Path:
        return self.path / FRAGMENTS

    def clear_partial(self) -> None:
        """Drop partial report files and the temporary folders of unfinished fragments."""
        if not self.path.is_dir():
            return
        for entry in self.path.iterdir():
            if entry.name not in (FRAGMENTS, STAGING_MARKER):
                _remove(entry)
        if self.fragments.is_dir():
            for entry in self.fragments.iterdir():
                if entry.name.startswith(".") and ".tmp" in entry.name:
                    _remove(entry)

    def abandon(self) -> None:
        """After a failure: clear partial files; keep completed fragments for ``--resume``, and
        the staging folder only if it holds any."""
        try:
            self.clear_partial()
            if not self.fragments.is_dir() or not any(self.fragments.iterdir()):
                shutil.rmtree(self.path, ignore_errors=True)
        except OSError:  # the original failure matters more than a failed clean-up
            pass
        finally:
            self.release()

    def commit(self, files: list[str]) -> None:
        """Move the staged report into ``out``: one rename when it is new or empty, else file by file."""
        out = self.out
        if not out.is_symlink() and (not out.exists() or (out.is_dir() and not any(out.iterdir()))):
            try:
                os.rename(self.path, out)
            except OSError:
                if not out.is_dir() or any(out.iterdir()):
                    raise
            else:
                (out / STAGING_MARKER).unlink(missing_ok=True)
                self.release()
                return
        old = owned_files(out)
        ours = {*old, INCOMPLETE} if _is_marker(out / INCOMPLETE) else set(old)
        clash = [rel for rel in [*files, INCOMPLETE] if rel not in ours and (out / rel).exists()]
        if clash:
            raise InvalidInputError(
                f"--out {out} holds {', '.join(clash[:5])}, which robustcnn did not write and would replace; "
                "move them and rerun with --resume (the finished work is kept)"
            )
        (out / INCOMPLETE).write_text(INCOMPLETE_TEXT + json.dumps(sorted(set(old) | set(files))) + "\n")
        (out / "meta.json").unlink(missing_ok=True)
        for rel in old:
            if rel not in ("meta.json", INCOMPLETE):
                _remove(out / rel)
        _prune_empty(out / "figures")
        for rel in files:
            if rel != "meta.json":
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path / rel, out / rel)
        os.replace(self.path / "meta.json", out / "meta.json")
        (out / INCOMPLETE).unlink()
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()


def staging_path(out: Path) -> Path:
    """``.<name>.robustcnn-staging`` beside ``out`` (``out`` made absolute first, so ``.`` works)."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}{STAGING_SUFFIX}"


def begin(out: Path, resume: bool = False, force: bool = False) -> Staging:
    """Check that ``out`` may be written and open the run's staging folder.

    Refuses (exit 4) a path on a kernel file system, a file, a staging folder robustcnn did not
    make, and a non-empty folder that is not a robustcnn report unless ``force``; even with
    ``force`` a file robustcnn would write is never written over. With ``resume`` the completed
    fragments of an earlier run (in the staging folder, or kept in ``out``) are reused.
    """
    check_out(out, force)
    staging = Staging(out)
    with os_errors(staging.path):
        if staging.path.exists() and not _made_by_robustcnn(staging.path):
            raise InvalidInputError(
                f"{staging.path} exists and was not made by robustcnn; move it away or choose another --out"
            )
        staging.path.mkdir(parents=True, exist_ok=True)
        staging.lock()
        try:
            (staging.path / STAGING_MARKER).write_text(json.dumps({"out": str(out), "pid": os.getpid()}) + "\n")
            if not resume:
                shutil.rmtree(staging.fragments, ignore_errors=True)
            staging.clear_partial()
            if resume and not staging.fragments.is_dir() and (out / FRAGMENTS).is_dir() and is_report_dir(out):
                os.rename(out / FRAGMENTS, staging.fragments)
        except BaseException:
            staging.abandon()
            raise
    return staging


def _made_by_robustcnn(staging: Path) -> bool:
    """A staging folder robustcnn made: it holds the marker, or nothing at all."""
    return (staging / STAGING_MARKER).is_file() or (staging.is_dir() and not any(staging.iterdir()))


def check_out(out: Path, force: bool = False) -> None:
    """Refuse an ``--out`` that robustcnn must not or cannot write (exit 4), before any work."""
    refuse_kernel_file_system(out)
    with os_errors(out, action="read"):
        if out.exists() and not out.is_dir():
            raise InvalidInputError(f"--out {out} is a file, not a folder; choose a folder for the report")
        if not out.is_dir() or is_report_dir(out):
            return
        foreign = sorted(p.name for p in out.iterdir())
    if not foreign:
        return
    listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
    if not force:
        raise InvalidInputError(
            f"--out {out} is not empty and is not a robustcnn report ({listed}); choose a new or empty "
            "folder, or pass --force to write the report beside those files (they are left untouched)"
        )
    clash = sorted(set(foreign) & REPORT_NAMES)
    if clash:
        raise InvalidInputError(
            f"--out {out} already holds {', '.join(clash)}, which robustcnn did not write and would replace; "
            "move them or choose another folder (--force never overwrites them)"
        )


def refuse_kernel_file_system(path: Path, what: str = "--out") -> None:
    """/proc, /sys and /dev hold no files robustcnn could write: refuse them before any work."""
    resolved = str(path.resolve())
    for root in PSEUDO_FILE_SYSTEMS:
        if resolved == root or resolved.startswith(root + "/"):
            raise EnvironmentProblemError(
                f"{what} {path} is under {root}, a kernel file system, not a disk; choose a path on disk"
            )


def is_report_dir(path: Path) -> bool:
    """A folder robustcnn wrote: its meta.json is a robustcnn report's, or it carries the
    INCOMPLETE marker of an interrupted swap."""
    if _is_marker(path / INCOMPLETE):
        return True
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "robustcnn_version" in meta and "schema_version" in meta


def _is_marker(path: Path) -> bool:
    """``path`` is an INCOMPLETE marker robustcnn wrote."""
    return path.is_file() and path.read_text(errors="replace").startswith(INCOMPLETE_TEXT.splitlines()[0])


def owned_files(out: Path) -> list[str]:
    """The paths (relative to ``out``) robustcnn wrote there: from meta.json's ``files``, the
    INCOMPLETE marker of an interrupted swap, or the fixed set of older reports; none otherwise."""
    marker = out / INCOMPLETE
    if _is_marker(marker):
        last = marker.read_text(errors="replace").strip().splitlines()[-1]
        try:
            listed = json.loads(last)
        except ValueError:
            listed = None
        if isinstance(listed, list):
            return [str(p) for p in listed if _inside(out, str(p))]
    if not is_report_dir(out):
        return []
    meta = json.loads((out / "meta.json").read_text())
    files = meta.get("files")
    if isinstance(files, list):
        return [str(p) for p in files if _inside(out, str(p))]
    return list(LEGACY_FILES)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary sibling and a rename; no temporary file survives a failure."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with os_errors(path, what="path"):
            write(tmp)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_report(
    out: Path,
    table: pd.DataFrame,
    samples: pd.DataFrame,
    meta: dict[str, Any],
    figures: dict[str, dict[str, bytes]],
    staging: Staging | None = None,
) -> Report:
    """Write tables, figures, summary.md and report.html, then meta.json, into the staging
    folder and swap them into ``out``; return the Report."""
    from ..reports.html import render_html
    from ..reports.markdown import render_summary

    staging = staging or begin(out)
    base = staging.path
    try:
        with os_errors(out):
            write_parquet(table, base / "results.parquet")
            table.to_csv(base / "results.csv", index=False, float_format="%.10g")
            write_parquet(samples, base / "samples.parquet")
            written = ["results.parquet", "results.csv", "samples.parquet", *_write_figures(base, figures)]
            written += ["summary.md", "report.html"] + ([FRAGMENTS] if staging.fragments.is_dir() else [])
            written.append("meta.json")
            meta = {**meta, "status": meta.get("status", "complete"), "files": written}  # or "partial" (--max-minutes)
            staged = Report(base, table, samples, meta)
            (base / "summary.md").write_text(render_summary(staged), encoding="utf-8")
            (base / "report.html").write_text(render_html(staged), encoding="utf-8")
            (base / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
            staging.commit(written)
    except BaseException:
        staging.abandon()
        raise
    return Report(out, table, samples, meta)


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Parquet through Python's file writes, so a full disk is an OSError with its errno."""
    buffer = io.BytesIO()
    parquet_safe(df).to_parquet(buffer, index=False)
    path.write_bytes(buffer.getvalue())


def _write_figures(base: Path, figures: dict[str, dict[str, bytes]]) -> list[str]:
    written = []
    for check, named in figures.items():
        folder = base / "figures" / check
        if named:
            folder.mkdir(parents=True, exist_ok=True)
        for name, png in named.items():
            (folder / f"{name}.png").write_bytes(png)
            written.append(f"figures/{check}/{name}.png")
    return written


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _prune_empty(folder: Path) -> None:
    """Remove the empty folders under ``folder`` (and it, if empty); a folder with anything left stays."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def _inside(out: Path, rel: str) -> bool:
    """A listed path stays inside ``out`` (a tampered meta.json cannot make robustcnn delete elsewhere)."""
    target = (out / rel).resolve()
    return rel not in ("", ".") and target != out.resolve() and out.resolve() in target.parents
