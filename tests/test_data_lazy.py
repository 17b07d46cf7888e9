"""Lazy datasets: index without decoding, decode only the sample, lazy capped training split,
the resize/crop policy, memory-mapped .npz, and every kind of unusable file as a counted skip."""

import json
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import save_torchscript, small_net, write_image_folder, write_npz
from PIL import Image

from robustcnn.cli import main
from robustcnn.data import DatasetRef, Policy, Target, files
from robustcnn.data.base import images_from_array
from robustcnn.data.policy import conform
from robustcnn.models import ModelRef
from robustcnn.runner import prepare


@pytest.fixture
def count_decodes(monkeypatch):
    """Counts the files PIL is asked to decode or probe, by file name."""
    calls = {"decode": [], "probe": []}
    decode, probe = files.decode_file, files.probe_file
    monkeypatch.setattr(files, "decode_file", lambda path, *a: calls["decode"].append(path.name) or decode(path, *a))
    monkeypatch.setattr(files, "probe_file", lambda path: calls["probe"].append(path.name) or probe(path))
    return calls


@pytest.fixture
def folder(tmp_path, mnist):
    """ROOT/train (60 images) and ROOT/test (40 images) of gray 28x28 digits, every class present."""
    classes = [str(i) for i in range(10)]
    tr, te = torch.arange(60) * 66, torch.arange(40) * 25  # mnist5k's splits are ordered by class
    write_image_folder(tmp_path / "ds" / "train", mnist.train.x[tr], mnist.train.y[tr], classes)
    write_image_folder(tmp_path / "ds" / "test", mnist.test.x[te], mnist.test.y[te], classes)
    return tmp_path / "ds"


def test_index_reads_no_image(folder, count_decodes):
    index = DatasetRef(str(folder)).index()
    assert len(index.test) == 40 and len(index.train) == 60
    assert index.test.ids[0].startswith("test/0/")
    assert count_decodes == {"decode": [], "probe": []}


def test_only_the_sample_is_decoded_and_train_only_when_read(folder, count_decodes):
    prepared = prepare(ModelRef(module=small_net(1)), DatasetRef(str(folder), train_n=20), 10, 0, "cpu")
    eval_files = {i.split("/")[-1] for i in prepared.data.eval.ids}
    assert len(prepared.data.eval) == 10
    assert sorted(count_decodes["decode"]) == sorted(eval_files)
    assert sorted(count_decodes["probe"]) == sorted(eval_files)
    train = prepared.data.train
    assert len(train) == 20 and not train.decoded
    count_decodes["decode"].clear()
    assert train.x.shape == (20, 1, 28, 28)
    assert len(count_decodes["decode"]) == 20
    assert np.bincount(train.y.numpy(), minlength=10).max() - np.bincount(train.y.numpy(), minlength=10).min() <= 2


def test_sample_matches_full_load_images(folder):
    prepared = prepare(ModelRef(module=small_net(1)), DatasetRef(str(folder)), 10, 0, "cpu")
    full = DatasetRef(str(folder)).load()
    pos = [full.test.ids.index(i) for i in prepared.data.eval.ids]
    assert torch.equal(prepared.data.eval.x, full.test.x[pos])


def test_npz_images_are_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 12, 12, 3), dtype=np.uint8)
    write_npz(tmp_path / "d.npz", x, np.arange(30) % 3)
    index = DatasetRef(str(tmp_path / "d.npz")).index()
    assert isinstance(index.test.source.raw, np.memmap)
    got = index.test.source.read([4, 7], Target(3, (12, 12)), [])
    assert torch.equal(torch.stack([got[4][0], got[7][0]]), images_from_array(x[[4, 7]], "x"))


def test_resize_center_crop_follow_torchvision_geometry():
    from torchvision.transforms import v2

    x = torch.rand(1, 3, 40, 60)
    out, _ = conform(x, None, Target(3, (24, 24), Policy(32, (24, 24))))
    reference = v2.CenterCrop(24)(v2.Resize(32, antialias=True)(x))
    assert out.shape == (1, 3, 24, 24) and torch.allclose(out, reference.clamp(0, 1))
    assert Policy(32).output_size((40, 60)) == (32, 48) and Policy(32).output_size((60, 40)) == (48, 32)


def test_files_follow_torchvision_eval_transforms_exactly(tmp_path):
    from torchvision import transforms

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    reference = transforms.Compose([transforms.Resize(36), transforms.CenterCrop(32), transforms.ToTensor()])
    with Image.open(tmp_path / "p.png") as img:
        expected = reference(img.convert("RGB"))
    assert torch.equal(files.decode_file(tmp_path / "p.png", Policy(36, (32, 32))), expected)


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _bomb_png(path, width=20000, height=20000):
    """A valid PNG header claiming ``width`` x ``height`` pixels, with almost no data behind it."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _bad_folder(root, mnist):
    classes = ["a", "b", "c"]
    write_image_folder(root, mnist.test.x[:6].expand(-1, 3, -1, -1), torch.tensor([0, 1, 0, 1, 0, 1]), classes)
    (root / "c").mkdir()  # a class with no images
    a, b = root / "a", root / "b"
    (a / "corrupt.png").write_bytes(os.urandom(300))
    Image.fromarray(np.full((28, 28, 3), 128, np.uint8)).save(b / "whole.jpg")
    (a / "truncated.jpg").write_bytes((b / "whole.jpg").read_bytes()[:200])
    (b / "whole.jpg").unlink()
    (a / "zero.jpg").write_bytes(b"")
    Image.fromarray(np.full((28, 28), 30000, np.uint16)).save(a / "sixteen.png")
    Image.new("CMYK", (28, 28), (0, 255, 255, 0)).save(b / "cmyk.jpg")
    _bomb_png(b / "bomb.png")
    (a / "notes.txt").write_text("not an image")
    (b / "loop").symlink_to(b, target_is_directory=True)
    (a / "self.png").symlink_to(a / "self.png")
    return {
        "a/corrupt.png": "cannot read image",
        "a/truncated.jpg": "cannot read image",
        "a/zero.jpg": "empty file",
        "b/bomb.png": "too many pixels",
        "a/notes.txt": "not an image file",
        "b/loop": "symlink loop",
        "a/self.png": "",
    }


def test_bad_files_are_counted_skips_listed_in_meta(tmp_path, mnist):
    expected = _bad_folder(tmp_path / "bad", mnist)
    model = save_torchscript(small_net(3, 3), tmp_path / "m.pt")
    code, out = run(
        "audit",
        "--model",
        str(model),
        "--trust-model",
        "--data",
        str(tmp_path / "bad"),
        "--checks",
        "clean",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert code == 0, out
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    skipped = {s["file"]: s["reason"] for s in meta["data"]["skipped"]["files"]}
    assert set(skipped) == set(expected)
    assert all(skipped[f].startswith(reason) for f, reason in expected.items())
    assert meta["data"]["skipped"]["count"] == len(expected)
    assert meta["data"]["eval_n"] == 8  # 6 good PNGs, the 16-bit PNG and the CMYK JPEG
    assert any("no images" in note for note in meta["data"]["notes"])
    index = DatasetRef(str(tmp_path / "bad")).index()
    sixteen = files.decode_file(tmp_path / "bad" / "a" / "sixteen.png")
    assert sixteen.shape == (1, 28, 28) and torch.allclose(sixteen, torch.full_like(sixteen, 30000 / 65535))
    assert files.decode_file(tmp_path / "bad" / "b" / "cmyk.jpg").shape == (3, 28, 28)
    assert len(index.test) == 11  # listed: the 6 PNGs, 16-bit, CMYK, corrupt, truncated, bomb


def test_folder_of_only_bad_files_is_one_line_exit_4(tmp_path):
    (tmp_path / "ds" / "cat").mkdir(parents=True)
    (tmp_path / "ds" / "cat" / "broken.png").write_bytes(b"not a png")
    _bomb_png(tmp_path / "ds" / "cat" / "bomb.png")
    code, out = run(
        "audit",
        "--model",
        "demo:mnist-cnn",
        "--data",
        str(tmp_path / "ds"),
        "--checks",
        "clean",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert code == 4
    assert "no readable images" in out and "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_policy_and_train_n_recorded_in_meta(tmp_path, mnist):
    te = torch.arange(10) * 100
    write_image_folder(tmp_path / "ds", mnist.test.x[te], mnist.test.y[te], [str(i) for i in range(10)])
    code, out = run(
        "audit",
        "--model",
        "demo:mnist-cnn",
        "--data",
        str(tmp_path / "ds"),
        "--checks",
        "clean",
        "--resize",
        "36",
        "--center-crop",
        "28",
        "--train-n",
        "7",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert code == 0, out
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["data"]["resize"] == 36 and meta["data"]["center_crop"] == [28, 28] and meta["data"]["train_n"] == 7
    assert meta["plan"]["resize"] == 36
    assert any("resized the shorter side to 36" in note for note in meta["data"]["conversions"])


def test_plan_data_keys(tmp_path):
    from robustcnn.errors import InvalidInputError
    from robustcnn.plan import plan_from_dict

    plan = plan_from_dict({"data": {"spec": "mnist5k", "resize": 256, "center_crop": 224, "train_n": 100}})
    assert plan.policy == Policy(256, (224, 224)) and plan.train_n == 100
    with pytest.raises(InvalidInputError, match="center_crop"):
        plan_from_dict({"data": {"center_crop": [1, 2, 3]}})
    with pytest.raises(InvalidInputError, match="train_n"):
        plan_from_dict({"data": {"train_n": 0}})


def test_unreadable_training_file_is_skipped_when_the_split_is_read(folder):
    (folder / "train" / "3" / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    data_ref = DatasetRef(str(folder), train_n=1000)  # every training file is drawn, the broken one too
    prepared = prepare(ModelRef(module=small_net(1)), data_ref, 10, 0, "cpu")
    train = prepared.data.train
    assert len(train) == 61 and data_ref.index().skipped == []
    assert train.x.shape[0] == 60 and len(train) == 60 and "train/3/zz-broken.png" not in train.ids
    skipped = data_ref.describe()["skipped"]
    assert skipped["count"] == 1 and skipped["files"][0]["file"] == "train/3/zz-broken.png"
    assert skipped["files"][0]["reason"].startswith("cannot read image")


def test_python_api_takes_the_policy(tmp_path, mnist):
    import robustcnn

    te = torch.arange(10) * 100
    write_image_folder(tmp_path / "ds", mnist.test.x[te], mnist.test.y[te], [str(i) for i in range(10)])
    report = robustcnn.audit(
        "demo:mnist-cnn",
        str(tmp_path / "ds"),
        checks=["clean"],
        out=tmp_path / "r",
        resize=32,
        center_crop=28,
        train_n=3,
    )
    assert report.meta["data"]["center_crop"] == [28, 28] and report.meta["data"]["train_n"] == 3
