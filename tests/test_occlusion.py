"""The ``occlusion`` check: maps against a brute-force occlusion loop, flips, the share of sensitivity
outside object masks (MNIST strokes, and a model that looks only at one corner), bad options, API."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from robustcnn.checks import AuditData, CheckContext
from robustcnn.checks.attribution.occlusion import MAPS, OcclusionCheck
from robustcnn.data import Split
from robustcnn.errors import InvalidInputError
from robustcnn.methods.attribution.occlusion import OcclusionConfig, window_and_stride
from robustcnn.models import AuditedModel
from robustcnn.results.schema import tidy


@pytest.fixture(scope="module")
def stroke_audit(mnist_audit):
    """20 test images whose object masks are their pen strokes."""
    split = mnist_audit.eval.subset(list(range(0, 200, 10)))
    split.masks = (split.x > 0.3).float()
    return mnist_audit.with_eval(split)


@pytest.fixture(scope="module")
def measured(demo_model, stroke_audit):
    check = OcclusionCheck.from_options({"examples": 4})
    part = check.measure(demo_model, stroke_audit.eval, CheckContext(seed=0, batch_size=256))
    return part, check.summarize(part.samples, part.artifacts, stroke_audit, CheckContext(seed=0))


def brute_force(
    model: AuditedModel, x: torch.Tensor, y: int, window: int, stride: int, baseline: float
) -> tuple[torch.Tensor, bool]:
    """Drop in the true class's probability averaged over the windows covering each pixel, and whether any window flips."""
    h, w = x.shape[-2:]
    with torch.no_grad():
        clean = model(x[None]).softmax(1)[0]
        total, count, flipped = torch.zeros(h, w), torch.zeros(h, w), False
        # captum's positions: ceil((size - window) / stride) + 1 per axis, the last clipped at the border
        for top in range(0, math.ceil((h - window) / stride) * stride + 1, stride):
            for left in range(0, math.ceil((w - window) / stride) * stride + 1, stride):
                occluded = x.clone()
                occluded[:, top : top + window, left : left + window] = baseline
                probs = model(occluded[None]).softmax(1)[0]
                total[top : top + window, left : left + window] += clean[y] - probs[y]
                count[top : top + window, left : left + window] += 1
                flipped |= bool(clean.argmax() == y and probs.argmax() != y)
    return total / count.clamp_min(1), flipped


def test_maps_and_flips_match_a_brute_force_occlusion_loop(demo_model, stroke_audit):
    split = stroke_audit.eval.subset([0, 5, 11])
    check = OcclusionCheck.from_options({"window": 6, "stride": 3, "baseline": 0.5})
    out = check.measure(demo_model, split, CheckContext(batch_size=64))
    maps = out.artifacts[MAPS]
    for i in range(len(split)):
        expected, flipped = brute_force(demo_model, split.x[i], int(split.y[i]), 6, 3, 0.5)
        assert torch.allclose(maps[i, 0], expected, atol=1e-5)
        assert out.samples["flipped"].iloc[i] == float(flipped)
        assert out.samples["peak_drop"].iloc[i] == pytest.approx(float(expected.max()), abs=1e-5)


def test_outside_share_is_computed_from_the_map_and_masks(measured, stroke_audit):
    part, out = measured
    maps = part.artifacts[MAPS]
    positive = maps.clamp(min=0)
    background = (stroke_audit.eval.masks < 0.5).float()
    expected = (positive * background).sum(dim=(1, 2, 3)) / positive.sum(dim=(1, 2, 3))
    assert part.samples["outside_share"].to_numpy() == pytest.approx(expected.numpy(), abs=1e-5)
    table = tidy(out.rows, "demo", "occlusion")
    overall = table[table["class"].isna()].set_index("metric")
    assert overall.loc["sensitivity_outside_object", "value"] == pytest.approx(float(expected.mean()), abs=1e-5)
    assert overall.loc["background_area_share", "value"] == pytest.approx(float(background.mean()), abs=1e-5)
    assert overall.loc["flipped_by_one_occluder", "n"] == int((part.samples["pred"] == part.samples["label"]).sum())
    per_class = table[(table["metric"] == "sensitivity_outside_object") & table["class"].notna()]
    assert set(per_class["class"]) == {str(k) for k in stroke_audit.eval.y.tolist()}
    assert {"occlusion-class-means", "occlusion-examples"} <= set(out.figures)


class CornerNet(nn.Module):
    """Class 0's logit is the brightness of the top-left 8x8 corner; nothing else matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, :8, :8].mean(dim=(1, 2, 3)) * 20
        return torch.stack([s, torch.full_like(s, 10.0)], dim=1)


def test_a_model_looking_at_the_background_is_caught():
    x = torch.full((4, 1, 24, 24), 0.9)
    corner = torch.zeros(4, 1, 24, 24)
    corner[:, :, :8, :8] = 1
    model = AuditedModel(CornerNet(), 2, 1, (24, 24))
    check = OcclusionCheck.from_options({"window": 4, "stride": 4, "baseline": 0.0})
    looks_at_object = check.run(
        model,
        AuditData("t", ["a", "b"], Split(x, torch.zeros(4, dtype=torch.long), list("abcd"), masks=corner)),
        CheckContext(),
    )
    looks_at_background = check.run(
        model,
        AuditData("t", ["a", "b"], Split(x, torch.zeros(4, dtype=torch.long), list("abcd"), masks=1 - corner)),
        CheckContext(),
    )
    assert looks_at_object.samples["outside_share"].max() < 1e-6
    assert looks_at_background.samples["outside_share"].min() > 1 - 1e-6
    ratio = pd.DataFrame(looks_at_background.rows).set_index("metric").loc["outside_sensitivity_ratio", "value"]
    assert ratio.iloc[0] == pytest.approx(576 / 64)  # all sensitivity on a background of 64 of 576 pixels


def test_headline_without_masks_is_the_flip_rate(demo_model, stroke_audit):
    split = stroke_audit.eval.subset(list(range(6)))
    split.masks = None
    check = OcclusionCheck.from_options({"examples": 0, "window": 7, "stride": 7})
    out = check.run(demo_model, stroke_audit.with_eval(split), CheckContext())
    label, v = (h := check.headline(tidy(out.rows, "demo", "occlusion"))).label, h.value
    assert "flipped" in label and 0 <= v <= 1
    assert "outside_share" not in out.samples and "occlusion-examples" not in out.figures


def test_automatic_window_and_stride_scale_with_the_image():
    assert window_and_stride(OcclusionConfig(), 28, 28) == (4, 2)
    assert window_and_stride(OcclusionConfig(), 224, 224) == (32, 16)
    assert window_and_stride(OcclusionConfig(window=5, stride=5), 28, 28) == (5, 5)


@pytest.mark.parametrize("size", [(8, 8), (28, 28), (32, 32), (64, 64), (100, 100), (224, 224), (224, 300)])
def test_max_positions_bounds_the_window_positions_and_leaves_no_pixel_unoccluded(size):
    h, w = size
    for bound in (2, 7, 10):
        window, stride = window_and_stride(OcclusionConfig(max_positions=bound), h, w)
        rows, cols = (math.ceil((side - window) / stride) + 1 for side in (h, w))
        assert max(rows, cols) <= bound and stride <= window <= min(h, w)
    assert window_and_stride(OcclusionConfig(max_positions=7), 224, 224) == (32, 32)  # 7 x 7 instead of 13 x 13
    assert window_and_stride(OcclusionConfig(max_positions=7), 64, 64) == (10, 10)  # the automatic window grows
    assert window_and_stride(OcclusionConfig(max_positions=20), 28, 28) == (4, 2)  # a loose bound changes nothing


def test_max_positions_that_outgrows_a_given_window_is_an_error():
    with pytest.raises(InvalidInputError, match="raise max_positions or the window"):
        window_and_stride(OcclusionConfig(window=4, max_positions=3), 28, 28)


@pytest.mark.parametrize(
    "options",
    [
        {"window": -1},
        {"stride": 1.5},
        {"window": 2, "stride": 3},
        {"baseline": 2.0},
        {"baseline": "grey"},
        {"examples": -2},
        {"max_positions": 1},
        {"max_positions": -1},
    ],
)
def test_bad_options_are_rejected(options):
    with pytest.raises(InvalidInputError):
        OcclusionCheck.from_options(options)


def test_window_larger_than_the_image_is_rejected(demo_model, stroke_audit):
    with pytest.raises(InvalidInputError, match="larger than"):
        OcclusionCheck.from_options({"window": 29}).run(demo_model, stroke_audit, CheckContext())


def test_audit_through_the_api(tmp_path):
    from robustcnn.api import audit

    report = audit(
        model="demo:mnist-cnn",
        data="mnist5k",
        checks=["occlusion"],
        options={"occlusion": {"window": 7, "stride": 7}},
        n=20,
        out=tmp_path,
        seed=0,
    )
    rows = report.table[(report.table["check"] == "occlusion") & (report.table["metric"] == "flipped_by_one_occluder")]
    overall = rows[rows["class"].isna()]
    assert len(overall) == 1 and not math.isnan(overall["value"].iloc[0])
