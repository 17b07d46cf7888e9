"""Built-in bias benchmarks: options, correlations, masks, counterfactual redrawing, demo recipes."""

import numpy as np
import pytest
import torch

from robustcnn.data import DatasetRef
from robustcnn.data.bias_sets import COLORS, counterfactuals_for
from robustcnn.errors import InvalidInputError
from robustcnn.models import zoo


@pytest.fixture(scope="module")
def colored():
    return DatasetRef("colored-mnist").load()


def _agreement(split, attribute):
    return float((split.attrs[f"{attribute}_aligned"] == "aligned").mean())


def test_colored_mnist_correlation_follows_options(colored):
    assert colored.train.x.shape == (4000, 3, 28, 28) and colored.test.x.shape == (1000, 3, 28, 28)
    assert abs(_agreement(colored.train, "color") - 0.95) < 0.02
    assert abs(_agreement(colored.test, "color") - 0.10) < 0.03
    reversed_ = DatasetRef("colored-mnist?train_corr=0.5&test_corr=0&seed=3").load()
    assert abs(_agreement(reversed_.train, "color") - 0.5) < 0.03
    assert _agreement(reversed_.test, "color") == 0.0
    # aligned means: the colour whose index is the label
    names = list(COLORS)
    aligned = colored.train.attrs["color"].map(names.index).to_numpy() == colored.train.y.numpy()
    assert (aligned == (colored.train.attrs["color_aligned"] == "aligned")).all()


def test_colored_images_are_tinted_digits(colored):
    gray = DatasetRef("mnist5k").load().train.x
    x = colored.train.x
    assert torch.allclose(x.amax(dim=1, keepdim=True), gray)  # every tint has a full-intensity channel
    red = np.flatnonzero(colored.train.attrs["color"].to_numpy() == "red")[0]
    assert x[red, 1:].abs().max() == 0 and x[red, 0].max() > 0.9


def test_background_mnist_masks_mark_the_strokes():
    data = DatasetRef("background-mnist").load()
    for split in (data.train, data.test):
        assert split.masks is not None and split.masks.shape == (len(split), 1, 28, 28)
        assert set(torch.unique(split.masks).tolist()) <= {0.0, 1.0}
    stroke = data.test.masks.bool().expand(-1, 3, -1, -1)
    # strokes are (nearly) white, the background is a darker photo patch
    assert data.test.x[stroke].mean() > 0.85
    assert data.test.x[~stroke].mean() < 0.5
    assert abs(_agreement(data.train, "background") - 0.95) < 0.02


@pytest.mark.parametrize(
    "spec, message",
    [
        ("colored-mnist?train_corr=1.5", "must lie in [0, 1]"),
        ("colored-mnist?train_corr=high", "must be a number"),
        ("colored-mnist?seed=x", "seed must be an integer"),
        ("background-mnist?corr=0.9", "has no option 'corr'"),
    ],
)
def test_bad_dataset_options_are_one_line_errors(spec, message):
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DatasetRef(spec).load()


@pytest.mark.parametrize("name, attribute", [("colored-mnist", "color"), ("background-mnist", "background")])
def test_counterfactual_redraws_the_same_digit(name, attribute):
    data = DatasetRef(name).load()
    (cf,) = counterfactuals_for(name)
    assert cf.attribute == attribute
    ids, values = data.test.ids[:30], data.test.attrs[attribute].tolist()[:30]
    assert torch.equal(cf.render(ids, values), data.test.x[:30])
    other = [cf.values[(cf.values.index(v) + 1) % len(cf.values)] for v in values]
    swapped = cf.render(ids, other)
    assert not torch.equal(swapped, data.test.x[:30])
    if data.test.masks is not None:  # the digit itself is unchanged where it is opaque
        solid = (data.test.masks[:30] > 0).expand(-1, 3, -1, -1) & (data.test.x[:30] > 0.99)
        assert torch.allclose(swapped[solid], data.test.x[:30][solid], atol=0.05)
    with pytest.raises(ValueError):
        cf.render(["mnist5k-3"], [values[0]])
    with pytest.raises(ValueError):
        cf.render(ids[:1], ["no-such-value"])


def test_demo_recipes_are_registered():
    names = {r.name: r for r in zoo.list_demos()}
    assert names["colored-mnist-cnn"].data == "colored-mnist"
    assert names["colored-mnist-gray-cnn"].arch == "colorblind-mnist-cnn"
    assert names["background-mnist-cnn"].data == "background-mnist"
    net = zoo.build_architecture("colorblind-mnist-cnn", 3, 10)
    x = torch.rand(2, 3, 28, 28)
    shuffled = x[:, [2, 0, 1]]  # recolouring that keeps the channel maximum
    assert torch.allclose(net(x), net(shuffled))
