"""The trust boundary for model files: without --trust-model nothing in a file runs, whatever its
format or suffix; safetensors and weights-only state_dicts still load; trusted pickles of any
protocol load with the flag."""

import contextlib
import io
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import save_exported, save_torchscript, small_net
from safetensors.torch import save_file
from torch import nn

from robustcnn.cli import main
from robustcnn.errors import InvalidInputError
from robustcnn.models import ModelRef
from robustcnn.models.files import FileKind, detect_kind

X = torch.rand(4, 1, 28, 28)
SUFFIXES = [".pt", ".pt2", ".bin", ".safetensors", ".pth"]


class WritesSentinel:
    """Unpickling this creates the sentinel file: the stand-in for any code a file could run."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return open, (self.sentinel, "w")


class SetstateWritesSentinel(nn.Module):
    """TorchScript whose scripted __setstate__ creates a file during torch.jit.load: no pickle needed."""

    def __init__(self, sentinel: str) -> None:
        super().__init__()
        self.sentinel = sentinel
        self.scale = torch.ones(1)

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, bool]:
        return self.sentinel, self.scale, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]) -> None:
        created = torch.from_file(state[0], True, 4, dtype=torch.uint8)
        self.sentinel, self.scale, self.training = state[0], state[1] + created.sum() * 0, state[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * self.scale


def _pickled(obj: object, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _replace_entries(archive: Path, replace: dict[str, bytes]) -> bytes:
    """The zip ``archive`` with the entries whose names end in a key of ``replace`` swapped for its bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            new = next((data for tail, data in replace.items() if name.endswith(tail)), None)
            dst.writestr(name, src.read(name) if new is None else new)
    return out.getvalue()


def _malicious(kind: str, sentinel: Path, work: Path) -> bytes:
    payload = WritesSentinel(sentinel)
    if kind == "pickle-protocol-4":
        return pickle.dumps(payload, protocol=4)
    if kind == "torch-save-zip":
        return _pickled(payload)
    if kind == "torch-save-legacy":
        return _pickled(payload, _use_new_zipfile_serialization=False)
    if kind == "state-dict-with-reducer":
        return _pickled({"conv.weight": torch.zeros(2, 1, 3, 3), "conv.bias": payload})
    if kind == "export-sample-inputs":
        real = save_exported(small_net(), work / "real.pt2")
        return _replace_entries(real, {"sample_inputs/model.pt": _pickled(payload)})
    if kind == "torchscript-data-pkl":
        pkl = pickle.dumps(payload, protocol=2)
        return _replace_entries(save_torchscript(small_net(), work / "real_ts.pt"), {"/data.pkl": pkl})
    if kind == "torchscript-constants-pkl":
        pkl = pickle.dumps((payload,), protocol=2)
        return _replace_entries(save_torchscript(small_net(), work / "real_ts.pt"), {"/constants.pkl": pkl})
    if kind == "torchscript-setstate":
        torch.jit.save(torch.jit.script(SetstateWritesSentinel(str(sentinel))), str(work / "setstate.pt"))
        return (work / "setstate.pt").read_bytes()
    raise AssertionError(kind)


KINDS = [
    "pickle-protocol-4",
    "torch-save-zip",
    "torch-save-legacy",
    "state-dict-with-reducer",
    "export-sample-inputs",
    "torchscript-data-pkl",
    "torchscript-constants-pkl",
    "torchscript-setstate",
]


@pytest.fixture(scope="module")
def malicious(tmp_path_factory):
    """Each malicious file's bytes and the sentinel its payload would create."""
    work = tmp_path_factory.mktemp("malicious")
    files = {}
    for kind in KINDS:
        sentinel = work / f"ran-{kind}"
        files[kind] = (_malicious(kind, sentinel, work), sentinel)
        if sentinel.exists():  # building a TorchScript file with a __setstate__ runs it once
            sentinel.unlink()
    return files


LIVE_UNDER = {  # how torch (or pickle) would load each file without a trust boundary, and it runs the payload
    "pickle-protocol-4": lambda p: pickle.loads(p.read_bytes()),
    "torch-save-zip": lambda p: torch.load(str(p), weights_only=False),
    "torch-save-legacy": lambda p: torch.load(str(p), weights_only=False),
    "state-dict-with-reducer": lambda p: torch.load(str(p), weights_only=False),
    "export-sample-inputs": lambda p: torch.export.load(str(p)),
    "torchscript-setstate": lambda p: torch.jit.load(str(p)),
}  # the TorchScript files with a Python reducer in data.pkl/constants.pkl are refused by torch.jit's own unpickler


@pytest.mark.parametrize("kind", sorted(LIVE_UNDER))
def test_the_payloads_are_live(malicious, tmp_path, kind):
    """Each payload does run when its file is loaded without a trust boundary, so the refusals below mean something."""
    data, sentinel = malicious[kind]
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    with contextlib.suppress(Exception):  # several payloads run, then the loader fails on what they returned
        LIVE_UNDER[kind](path)
    assert sentinel.exists()
    sentinel.unlink()


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kind", KINDS)
def test_python_api_runs_nothing_without_trust(malicious, tmp_path, kind, suffix):
    data, sentinel = malicious[kind]
    path = tmp_path / f"model{suffix}"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError) as info:
        ModelRef(str(path), arch="helpers:small_net").load(10, 1, (28, 28))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "can run code" in message and "--trust-model" in message and "state_dict" in message
    assert not sentinel.exists()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("kind", KINDS)
def test_cli_runs_nothing_without_trust(malicious, tmp_path, kind, suffix):
    data, sentinel = malicious[kind]
    path = tmp_path / f"model{suffix}"
    path.write_bytes(data)
    result = CliRunner().invoke(
        main,
        [
            "audit",
            "--model",
            str(path),
            "--arch",
            "helpers:small_net",
            "--checks",
            "clean",
            "--n",
            "10",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "can run code" in lines[0] and "--trust-model" in lines[0]
    assert not sentinel.exists()
    assert not (tmp_path / "r" / "meta.json").exists()


def expected(net: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return net(X)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_safetensors_loads_by_content(tmp_path, suffix):
    net = small_net()
    path = tmp_path / f"w{suffix}"
    save_file(net.state_dict(), str(path))
    assert detect_kind(path.read_bytes()) is FileKind.SAFETENSORS
    model = ModelRef(str(path), arch="helpers:small_net").load(10, 1, (28, 28))
    assert torch.allclose(model.logits(X), expected(net), atol=1e-5)


def test_safetensors_via_cli(tmp_path):
    save_file(small_net().state_dict(), str(tmp_path / "w.safetensors"))
    model = str(tmp_path / "w.safetensors")
    result = CliRunner().invoke(
        main,
        [
            "audit",
            "--model",
            model,
            "--arch",
            "helpers:small_net",
            "--checks",
            "clean",
            "--n",
            "10",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "meta.json").exists()


@pytest.mark.parametrize("suffix", [".pt", ".bin", ".pt2"])
def test_state_dict_loads_without_trust_whatever_the_suffix(tmp_path, suffix):
    net = small_net()
    path = tmp_path / f"w{suffix}"
    torch.save({"model_state_dict": net.state_dict(), "epoch": 3}, path)
    model = ModelRef(str(path), arch="helpers:small_net").load(10, 1, (28, 28))
    assert torch.allclose(model.logits(X), expected(net), atol=1e-5)


def test_corrupt_safetensors_is_one_clear_error(tmp_path):
    header = b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}'
    (tmp_path / "w.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(InvalidInputError, match="cannot read safetensors file"):
        ModelRef(str(tmp_path / "w.safetensors"), arch="helpers:small_net").load(10, 1, (28, 28))


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_code_carrying_archives_need_trust(tmp_path, fmt):
    net = small_net()
    path = save_exported(net, tmp_path / "m.pt2") if fmt == "export" else save_torchscript(net, tmp_path / "m.pt")
    with pytest.raises(InvalidInputError, match=r"can run code.*--trust-model"):
        ModelRef(str(path)).load(10, 1, (28, 28))
    model = ModelRef(str(path), trust=True).load(10, 1, (28, 28))
    assert torch.allclose(model.logits(X), expected(net), atol=1e-5)


def test_export_archive_named_pt_is_still_an_export_archive(tmp_path):
    path = save_exported(small_net(), tmp_path / "m.pt2")
    renamed = tmp_path / "m.pt"
    renamed.write_bytes(path.read_bytes())
    assert detect_kind(renamed.read_bytes()) is FileKind.EXPORT
    with pytest.raises(InvalidInputError, match=r"torch\.export archive, which can run code"):
        ModelRef(str(renamed)).load(10, 1, (28, 28))


@pytest.mark.parametrize("how", ["pickle-protocol-4", "torch-save-protocol-4", "torch-save-legacy"])
def test_trusted_pickled_module_of_any_protocol_loads(tmp_path, how):
    net = small_net()
    path = tmp_path / "full.pt"
    if how == "pickle-protocol-4":
        path.write_bytes(pickle.dumps(net, protocol=4))
    else:
        path.write_bytes(_pickled(net, pickle_protocol=4, _use_new_zipfile_serialization=how.endswith("4")))
    with pytest.raises(InvalidInputError, match="--trust-model"):
        ModelRef(str(path)).load(10, 1, (28, 28))
    model = ModelRef(str(path), trust=True).load(10, 1, (28, 28))
    assert torch.allclose(model.logits(X), expected(net), atol=1e-5)
