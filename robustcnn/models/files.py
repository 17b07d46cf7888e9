"""Read a model file by its content, and run nothing from it unless the user trusts the file.

Loaded without ``--trust-model``, because reading them cannot run code:

* safetensors (a JSON header and raw tensor bytes), read with the ``safetensors`` library;
* a ``torch.save`` file (zip or legacy format) read by torch's weights-only unpickler
  (``torch.load(weights_only=True)``), which refuses every global outside a fixed allow-list of
  tensor and container types and refuses TorchScript archives. This is the state_dict path.

Loaded only with ``--trust-model``, because they can run code (checked in torch 2.14.1):

* full pickles, and any ``torch.save`` file the weights-only unpickler refuses, for any reason;
* ``torch.export`` archives. ``torch.export.load`` unpickles the archive's sample inputs by
  trying ``weights_only=True`` and then falling back to ``weights_only=False``, so replacing
  that one entry with a ``__reduce__`` payload runs it on load; pickled weights, pickled
  constants and "opaque" constants go to ``torch.load(weights_only=False)`` and ``pickle.loads``;
  an AOTInductor entry loads a shared library. Checking every pickled entry would not be enough,
  as the graph itself is code: the deserializer resolves call targets in ``models/*.json`` by
  ``getattr`` from the ``torch`` module (``torch.os.system`` is ``os.system``), and showing that
  no graph can reach a harmful target would mean auditing the whole deserializer.
* TorchScript archives. Their ``code/`` is a program compiled at load, and a scripted
  ``__setstate__`` runs during ``torch.jit.load``: one calling ``torch.from_file(path, True, n)``
  creates a file before any image is seen.

The format is taken from the bytes, never from the suffix, and the bytes are read once, so
what was checked is what is loaded. Detection only picks the loader and the message: without
trust the only loaders reached are safetensors and the weights-only unpickler, whatever the
detection concluded.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import warnings
import zipfile
from enum import Enum
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidInputError

# torch's legacy (non-zip) format starts with a pickle of this magic number.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_SAFE_ALTERNATIVES = (
    "save a state_dict (torch.save(model.state_dict(), 'w.pt')) or safetensors and pass --arch, "
    "or pass --trust-model if you trust the file"
)


class FileKind(Enum):
    SAFETENSORS = "safetensors file"
    EXPORT = "torch.export archive"
    TORCHSCRIPT = "TorchScript archive"
    TORCH_SAVE = "torch.save file"
    PICKLE = "Python pickle"
    UNKNOWN = "unknown"


def detect_kind(data: bytes) -> FileKind:
    """The format of a model file, from its bytes."""
    names = _zip_names(data)
    if names is not None:
        if any(_is_export_entry(n) for n in names):
            return FileKind.EXPORT
        if any(n.endswith("constants.pkl") or n.startswith("code/") or "/code/" in n for n in names):
            return FileKind.TORCHSCRIPT
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return FileKind.TORCH_SAVE
        return FileKind.UNKNOWN
    if _is_safetensors(data):
        return FileKind.SAFETENSORS
    if len(data) > 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return FileKind.TORCH_SAVE if _starts_with_torch_magic(data) else FileKind.PICKLE
    return FileKind.UNKNOWN


def read_model_file(path: Path, trust: bool) -> object:
    """A network (``nn.Module``) or the object stored in ``path`` (a state_dict or checkpoint).

    Without ``trust`` only formats that cannot run code are read; anything else raises an
    InvalidInputError that names the flag and the safe alternatives."""
    data = path.read_bytes()
    kind = detect_kind(data)
    if kind is FileKind.SAFETENSORS:
        return _read_safetensors(data, path)
    if kind in (FileKind.EXPORT, FileKind.TORCHSCRIPT):
        if not trust:
            raise InvalidInputError(f"{path} is a {kind.value}, which can run code when loaded; {_SAFE_ALTERNATIVES}")
        return _load_exported(path) if kind is FileKind.EXPORT else _load_torchscript(path)
    if kind is FileKind.UNKNOWN and not trust:
        raise InvalidInputError(
            f"{path} is not a model file robustcnn can read "
            "(safetensors, a torch.save state_dict, or with --trust-model a .pt2, TorchScript or pickle)"
        )
    if kind is FileKind.PICKLE and not trust:
        raise InvalidInputError(
            f"{path} is a Python pickle, not a torch.save or safetensors file, so loading it can run code; "
            f"{_SAFE_ALTERNATIVES}"
        )
    if kind is FileKind.TORCH_SAVE:
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            if not trust:
                raise InvalidInputError(
                    f"{path} is a pickle that torch's weights-only loader refuses ({_refusal_reason(exc)}), "
                    f"so loading it can run code; {_SAFE_ALTERNATIVES}"
                ) from exc
    return _unpickle_trusted(data, kind, path)


def _zip_names(data: bytes) -> list[str] | None:
    if not data.startswith(b"PK"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _starts_with_torch_magic(data: bytes) -> bool:
    """Whether the first pickled value is torch's legacy magic number, read by opcode (nothing is executed)."""
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data[:64])):
            if opcode.name not in ("PROTO", "FRAME"):
                return opcode.name == "LONG1" and arg == _TORCH_LEGACY_MAGIC
    except (ValueError, EOFError):
        return False
    return False


def _is_export_entry(name: str) -> bool:
    parts = name.split("/")
    in_models_dir = len(parts) >= 2 and parts[-2] == "models" and parts[-1].endswith(".json")
    return in_models_dir or parts[-1] in ("archive_format", "serialized_exported_program.json")


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header_size = int.from_bytes(data[:8], "little")
    return 2 <= header_size <= len(data) - 8 and data[8:9] == b"{"


def _read_safetensors(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"cannot read safetensors file {path}: {_first_line(exc)}") from exc


def _unpickle_trusted(data: bytes, kind: FileKind, path: Path) -> object:
    """Full unpickling, for files the user trusts: torch's loader for torch.save files, else pickle."""
    try:
        if kind is FileKind.TORCH_SAVE:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        return pickle.loads(data)
    except Exception as exc:
        raise InvalidInputError(f"cannot unpickle {path}: {_first_line(exc)}") from exc


def _load_exported(path: Path) -> nn.Module:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise InvalidInputError(f"cannot read torch.export archive {path}: {_first_line(exc)}") from exc
    return program.module()


def _load_torchscript(path: Path) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise InvalidInputError(f"cannot read TorchScript file {path}: {_first_line(exc)}") from exc


def _refusal_reason(exc: BaseException) -> str:
    """The first sentence of the specific line of a weights-only refusal (the first line is a generic preamble)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    generic = ("Weights only load failed", "Check the documentation", "Please file an issue", "(1)", "(2)")
    specific = [line for line in lines if not line.startswith(generic) and "weights_only" not in line]
    reason = (specific[0] if specific else (lines[0] if lines else type(exc).__name__)).split(". ")[0]
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
