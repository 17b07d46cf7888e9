"""Errors that carry the CLI exit code, so every layer can fail cleanly.

Exit codes: 1 a gate failed, 2 usage, 3 internal bug, 4 invalid input, config or environment,
5 nothing evaluated, 6 stopped by ``--max-minutes`` with a partial report written (``--resume``
finishes it; no error: the report says which checks did not run).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RobustCNNError(Exception):
    """Base class: a problem with a one-line message and an exit code."""

    exit_code = 3


class UsageError(RobustCNNError):
    """The command line or Python call was used wrongly (exit 2)."""

    exit_code = 2


class InvalidInputError(RobustCNNError):
    """A bad model, dataset, plan, policy or value (exit 4)."""

    exit_code = 4


class EnvironmentProblemError(InvalidInputError):
    """The file system or machine refused: permissions, read-only, full disk, bad path (exit 4)."""


class NothingEvaluatedError(RobustCNNError):
    """The run finished without evaluating anything (exit 5)."""

    exit_code = 5


PARTIAL_EXIT = 6  # a run stopped by --max-minutes wrote a partial report


_CAUSES = {
    errno.EACCES: ("permission denied", "fix its permissions or choose another {what}"),
    errno.EPERM: ("operation not permitted", "fix its permissions or choose another {what}"),
    errno.EROFS: ("read-only file system", "choose a {what} on a writable disk"),
    errno.ENOSPC: ("no space left on the device", "free some space or choose a {what} on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or choose a {what} on another disk"),
    errno.EFBIG: ("file too large for this file system or limit", "choose a {what} on another disk"),
    errno.ENOENT: ("no such file or directory", "check the path or choose another {what}"),
    errno.ENOTDIR: ("a part of the path is not a directory", "check the path or choose another {what}"),
    errno.EISDIR: ("is a directory", "choose another {what}"),
    errno.EEXIST: ("already exists", "remove it or choose another {what}"),
    errno.ENOTEMPTY: ("directory not empty", "remove it or choose another {what}"),
    errno.ENAMETOOLONG: ("name too long", "choose a shorter {what}"),
    errno.ELOOP: ("too many symbolic links", "check the path or choose another {what}"),
    errno.EXDEV: ("crosses file systems", "choose a {what} on one disk"),
    errno.EIO: ("input/output error", "check the disk or choose another {what}"),
    errno.EMFILE: ("too many open files", "raise the open-file limit (ulimit -n)"),
    errno.ENFILE: ("too many open files on the system", "close other programs and retry"),
}


def environment_error(
    exc: OSError, path: str | Path | None = None, what: str = "path", action: str = "access"
) -> EnvironmentProblemError | None:
    """A one-line exit-4 error naming the path, the cause and the fix, for an OSError the file
    system or machine caused (permissions, read-only, full disk, bad path); None for others."""
    code = exc.errno
    if code is None:  # pyarrow and others put the errno only in the message: "[Errno 28] ..."
        found = re.search(r"\[Errno (\d+)\]", str(exc))
        code = int(found.group(1)) if found else None
    if code not in _CAUSES:
        return None
    cause, fix = _CAUSES[code]
    target = path if path is not None else exc.filename
    where = f" {target}" if target is not None else ""
    name = errno.errorcode[code]
    return EnvironmentProblemError(f"cannot {action}{where}: {cause} ({name}); {fix.format(what=what)}")


@contextmanager
def os_errors(path: str | Path, what: str = "--out", action: str = "write") -> Iterator[None]:
    """Within the block, a file-system refusal about ``path`` becomes a one-line exit-4 error."""
    try:
        yield
    except OSError as exc:
        mapped = environment_error(exc, path, what, action)
        if mapped is None:
            raise
        raise mapped from exc
