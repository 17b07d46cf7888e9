"""Completed units of work on disk, keyed by content, so ``--resume`` redoes only what is missing.

A fragment is a directory holding ``rows.json``, ``samples.parquet``, ``artifacts.pt``
(tensors only, loaded with ``weights_only=True``), ``figures/*.png`` and ``info.json``.
It is written under a temporary name and renamed into place, so a crash never leaves a
fragment that looks complete.
"""
from __future__ import annotations

import hashlib
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


def content_key(*parts: Any) -> str:
    """A stable hash of JSON-able parts (fingerprints, check config, seed, version, shard)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class FragmentStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "info.json").exists()

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def save(self, key: str, output: CheckOutput, cost: dict[str, Any]) -> None:
        final = self.path(key)
        tmp = self.root / f".{key}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "figures").mkdir(parents=True)
        (tmp / "rows.json").write_text(json.dumps(output.rows, default=_json_default))
        if output.samples is not None:
            _to_parquet(output.samples, tmp / "samples.parquet")
        if output.artifacts:
            torch.save({k: v.detach().cpu() for k, v in output.artifacts.items()}, tmp / "artifacts.pt")
        for name, png in output.figures.items():
            (tmp / "figures" / f"{name}.png").write_bytes(png)
        info = {"warnings": output.warnings, "info": output.info, "cost": cost}
        (tmp / "info.json").write_text(json.dumps(info, default=_json_default))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)

    def load(self, key: str) -> tuple[CheckOutput, dict[str, Any]]:
        base = self.path(key)
        info = json.loads((base / "info.json").read_text())
        samples = pd.read_parquet(base / "samples.parquet") if (base / "samples.parquet").exists() else None
        artifacts = torch.load(base / "artifacts.pt", weights_only=True) if (base / "artifacts.pt").exists() else {}
        figures = {p.stem: p.read_bytes() for p in sorted((base / "figures").glob("*.png"))}
        rows = json.loads((base / "rows.json").read_text())
        out = CheckOutput(rows=rows, samples=samples, figures=figures, artifacts=artifacts, warnings=info["warnings"], info=info["info"])
        return out, info["cost"]


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
    from .reports.schema import parquet_safe

    parquet_safe(df).to_parquet(path, index=False)
