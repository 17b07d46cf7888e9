"""Completed units of work on disk, keyed by content, so ``--resume`` redoes only what is missing.

A fragment is a directory holding ``rows.json``, ``samples.parquet``, ``artifacts.pt``
(tensors only, loaded with ``weights_only=True``), ``figures/*.png`` and ``info.json``.
It is written under a temporary name and renamed into place, so a crash never leaves a
fragment that looks complete; ``info.json`` records the sha256 of every other file, so a
fragment damaged on disk is detected on load (``CorruptFragmentError``) instead of reused.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .checks import CheckOutput
from .errors import os_errors


def content_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts (fingerprints, check config, seed, version, shard)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class CorruptFragmentError(Exception):
    """A stored fragment cannot be read back or does not match its recorded checksums."""


class FragmentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "info.json").exists()

    def discard(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)

    def save(self, key: str, output: CheckOutput, cost: dict[str, Any]) -> None:
        final = self.path(key)
        tmp = self.root / f".{key}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with os_errors(self.root):
                (tmp / "figures").mkdir(parents=True)
                (tmp / "rows.json").write_text(json.dumps(output.rows, default=_json_default))
                if output.samples is not None:
                    _to_parquet(output.samples, tmp / "samples.parquet")
                if output.artifacts:
                    buffer = io.BytesIO()  # torch reports a full disk as a RuntimeError; Python's write names it
                    torch.save({k: v.detach().cpu() for k, v in output.artifacts.items()}, buffer)
                    (tmp / "artifacts.pt").write_bytes(buffer.getvalue())
                for name, png in output.figures.items():
                    (tmp / "figures" / f"{name}.png").write_bytes(png)
                sums = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
                info = {"warnings": output.warnings, "info": output.info, "cost": cost, "sha256": sums}
                (tmp / "info.json").write_text(json.dumps(info, default=_json_default))
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load(self, key: str) -> tuple[CheckOutput, dict[str, Any]]:
        """Read a fragment back; ``CorruptFragmentError`` names what is wrong with it."""
        base = self.path(key)
        try:
            info = json.loads((base / "info.json").read_text())
            sums = info["sha256"]
            found = {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()} - {"info.json"}
            if set(sums) != found:
                raise CorruptFragmentError(f"files {sorted(found ^ set(sums))} are missing or unexpected")
            for name, digest in sums.items():
                if _sha256(base / name) != digest:
                    raise CorruptFragmentError(f"{name} does not match its checksum")
            samples = pd.read_parquet(base / "samples.parquet") if (base / "samples.parquet").exists() else None
            artifacts = torch.load(base / "artifacts.pt", weights_only=True) if (base / "artifacts.pt").exists() else {}
            figures = {p.stem: p.read_bytes() for p in sorted((base / "figures").glob("*.png"))}
            rows = json.loads((base / "rows.json").read_text())
            out = CheckOutput(
                rows=rows,
                samples=samples,
                figures=figures,
                artifacts=artifacts,
                warnings=info["warnings"],
                info=info["info"],
            )
            return out, info["cost"]
        except CorruptFragmentError:
            raise
        except Exception as exc:  # any unreadable part: JSON, parquet, torch or a missing key
            raise CorruptFragmentError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return str(obj)


def _to_parquet(df: pd.DataFrame, path: Path) -> None:
    from .results.writer import write_parquet

    write_parquet(df, path)
