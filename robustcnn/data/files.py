"""Image files on disk: listing without decoding, header probes, and parallel decoding with PIL.

Every way a file can be unusable (empty, truncated or corrupt, not an image, an unsupported
pixel mode, too many pixels, a symlink loop) becomes a ``BadImage`` with a one-line reason,
never an exception that escapes or an allocation proportional to the claimed image size.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from .index import BadImage
from .policy import Policy, Target, apply_policy, conform

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# Images with more pixels are refused before decoding (a 7,000 x 7,000 photo passes; PIL's own
# guard starts at 89 M pixels and only warns below 179 M). Decoding one costs up to 4 bytes per
# pixel and channel as float32, so this bounds a worker's transient memory at about 0.6 GB.
MAX_PIXELS = 50_000_000
GRAY_MODES = {"1", "L", "LA", "P;L"}
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
# Our limit is stricter than PIL's, so its warning would only repeat what the skip already says.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

T = TypeVar("T")
NO_POLICY = Policy()


def decode_workers() -> int:
    """Threads used to decode images (PIL and torch release the GIL while they work)."""
    return max(1, min(8, os.cpu_count() or 1))


class FileSource:
    """The images of one split as files under ``root`` (``rel`` paths, their sizes and mtimes)."""

    def __init__(self, root: Path, rel: list[str], stats: list[tuple[int, int]], workers: int | None = None) -> None:
        self.root, self.rel, self.stats = root, rel, stats
        self.workers = workers or decode_workers()

    def __len__(self) -> int:
        return len(self.rel)

    def identity(self) -> str:
        h = hashlib.sha256()
        for rel, (size, mtime) in zip(self.rel, self.stats, strict=False):
            h.update(f"{rel}\0{size}\0{mtime}\n".encode())
        return h.hexdigest()

    def probe(self, positions: list[int]) -> dict[int, tuple[int, tuple[int, int]] | BadImage]:
        return dict(zip(positions, self._map(lambda p: probe_file(self.root / self.rel[p]), positions), strict=False))

    def read(
        self, positions: list[int], target: Target, notes: list[str]
    ) -> dict[int, tuple[torch.Tensor, None] | BadImage]:
        stretch_only = Target(target.channels, target.size)

        def one(p: int) -> tuple[torch.Tensor, None] | BadImage:
            image = decode_file(self.root / self.rel[p], target.policy, notes)
            if isinstance(image, BadImage):
                return image
            x, _ = conform(image[None], None, stretch_only, notes)
            return x[0].contiguous(), None

        return dict(zip(positions, self._map(one, positions), strict=False))

    def _map(self, fn: Callable[[int], T], positions: list[int]) -> list[T]:
        if len(positions) <= 1 or self.workers == 1:
            return [fn(p) for p in positions]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(fn, positions))


def probe_file(path: Path) -> tuple[int, tuple[int, int]] | BadImage:
    """Channels (1 or 3) and (H, W) from the file's header, or why it cannot be used."""
    try:
        with Image.open(path) as img:
            _check_pixels(img)
            if img.mode == "F":
                return BadImage(f"unsupported pixel mode {img.mode} (32-bit float)")
            return (1 if img.mode in GRAY_MODES | SIXTEEN_BIT_MODES else 3), (img.height, img.width)
    except BadImage as exc:
        return exc
    except Exception as exc:
        return _bad(exc)


def decode_file(path: Path, policy: Policy = NO_POLICY, notes: list[str] | None = None) -> torch.Tensor | BadImage:
    """The image as (C, H, W) float32 in [0, 1] after ``policy``: gray stays 1 channel, 16-bit is
    scaled by 65535. 8-bit images are resized and cropped by PIL, as torchvision's transforms do."""
    try:
        with Image.open(path) as img:
            _check_pixels(img)
            if img.mode in SIXTEEN_BIT_MODES:
                arr = np.asarray(img).astype(np.float32).clip(0, 65535) / 65535.0
                t, _ = apply_policy(torch.from_numpy(arr)[None, None], None, policy, notes)
                return t[0]
            if img.mode == "F":
                return BadImage(f"unsupported pixel mode {img.mode} (32-bit float)")
            img, _ = apply_policy(img.convert("L" if img.mode in GRAY_MODES else "RGB"), None, policy, notes)
            arr = np.asarray(img, dtype=np.uint8)
    except BadImage as exc:
        return exc
    except Exception as exc:
        return _bad(exc)
    t = torch.from_numpy(arr.copy()).float() / 255.0
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def _check_pixels(img: Image.Image) -> None:
    if img.width * img.height > MAX_PIXELS:
        raise BadImage(f"too many pixels ({img.width}x{img.height} > {MAX_PIXELS:,}; possible decompression bomb)")


def _bad(exc: Exception) -> BadImage:
    if isinstance(exc, MemoryError):
        raise exc
    if isinstance(exc, Image.DecompressionBombError):
        return BadImage(f"too many pixels (possible decompression bomb): {exc}")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BadImage(f"cannot read image: {text}")


def list_files(folder: Path, skipped: list[tuple[Path, str]]) -> list[tuple[Path, int, int]]:
    """Image files under ``folder`` (recursively, following links once) with size and mtime, sorted.

    Appends ``(path, reason)`` to ``skipped`` for empty files, non-image files, broken links and loops.
    """
    found: list[tuple[Path, int, int]] = []
    seen: set[tuple[int, int]] = set()

    def visit(directory: Path) -> None:
        try:
            st = directory.stat()
            entries = list(os.scandir(directory))
        except OSError as exc:
            skipped.append((directory, f"cannot list directory ({exc.strerror or exc})"))
            return
        if (st.st_dev, st.st_ino) in seen:
            skipped.append((directory, "symlink loop (directory already visited)"))
            return
        seen.add((st.st_dev, st.st_ino))
        for entry in entries:
            path = Path(entry.path)
            try:
                info = entry.stat()
            except OSError as exc:
                skipped.append((path, str(exc.strerror or exc)))
                continue
            if entry.is_dir():
                visit(path)
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((path, "not an image file (suffix)"))
            elif info.st_size == 0:
                skipped.append((path, "empty file (0 bytes)"))
            else:
                found.append((path, info.st_size, info.st_mtime_ns))

    visit(folder)
    found.sort(key=lambda item: item[0].parts)
    return found
