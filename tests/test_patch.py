"""The ``patch`` check on the demo MNIST CNN: placement geometry, training against the controls,
target selection, rows and figures, determinism, bad input, and one audit through the API."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from robustcnn.checks import AuditData, CheckContext
from robustcnn.checks.adversarial_patches.patch import PatchCheck
from robustcnn.data import Split
from robustcnn.errors import InvalidInputError
from robustcnn.methods.patch.evaluate import noise_patch, patched_predictions
from robustcnn.methods.patch.geometry import Placements, apply_patch, patch_resolution, sample_placements, shape_mask
from robustcnn.methods.patch.targets import parse_targets
from robustcnn.methods.patch.train import PatchTraining, patch_size, train_area_patches, train_patch
from robustcnn.results.schema import tidy

SMALL = {"areas": [0.1, 0.25], "shapes": ["square"], "train_images": 96, "epochs": 2, "batch_size": 32, "examples": 3}


@pytest.fixture(scope="module")
def small_audit(mnist_audit):
    return mnist_audit.with_eval(mnist_audit.eval.subset(list(range(0, 200, 4))))


@pytest.fixture(scope="module")
def result(demo_model, small_audit):
    check = PatchCheck.from_options({**SMALL, "target": "3"})
    return check, check.run(demo_model, small_audit, CheckContext(seed=0, batch_size=128))


@pytest.mark.parametrize("shape", ["square", "circle"])
@pytest.mark.parametrize("size", [(28, 28), (24, 40)])
def test_rendered_patch_covers_the_requested_area_inside_the_image(shape, size):
    h, w = size
    gen = torch.Generator().manual_seed(0)
    for area in (0.05, 0.25):
        side = patch_resolution(area, shape, h, w)
        pl = sample_placements(torch.full((64,), area), shape, h, w, 22.5, gen)
        alpha = apply_patch(torch.zeros(64, 1, h, w), torch.ones(1, 1, side, side), shape_mask(shape, side), pl)
        covered = alpha.mean(dim=(1, 2, 3))
        # the whole patch lies in the image: every placement covers the requested share (up to the disc's pixelation)
        assert torch.allclose(covered, torch.full_like(covered, area), rtol=0.12)
        assert pl.angle.abs().max() <= math.radians(22.5)


def test_unrotated_centred_patch_lands_on_the_exact_pixels():
    patch = torch.rand(1, 1, 4, 4)
    pl = Placements(torch.tensor([4.0]), torch.tensor([0.0]), torch.tensor([[-2.0, 4.0]]))
    out = apply_patch(torch.zeros(1, 1, 12, 12), patch, shape_mask("square", 4), pl)
    # centre at x = 6 - 2 = 4, y = 6 + 4 = 10 (pixel-edge coordinates): columns 2..5, rows 8..11
    assert torch.allclose(out[0, 0, 8:12, 2:6], patch[0, 0], atol=1e-6)
    assert out.sum() == pytest.approx(patch.sum().item(), abs=1e-4)


def test_gradients_reach_every_patch_pixel_through_rotated_scaled_placements():
    # the patch is pasted with grid_sample, so every stored pixel is trained, whatever the rotation and scale
    setup = PatchTraining([0.1], "square")
    size = patch_size(setup, 28, 28)
    patch = torch.rand(1, 1, size, size, requires_grad=True)
    areas = torch.full((64,), 0.1) * (
        1 + (torch.rand(64, generator=torch.Generator().manual_seed(0)) * 2 - 1) * setup.scale_jitter
    )
    pl = sample_placements(areas, "square", 28, 28, 22.5, torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(
        apply_patch(torch.rand(64, 1, 28, 28), patch, shape_mask("square", size), pl).sum(), patch
    )
    assert (grad.abs() > 0).all()


def test_one_patch_per_area_at_its_own_resolution_or_one_shared(demo_model, mnist):
    x = mnist.train.x[:64][mnist.train.y[:64] != 1]
    setup = PatchTraining([0.05, 0.25], "square", epochs=1, batch_size=32)
    own = train_area_patches(demo_model, x, 1, setup, torch.Generator().manual_seed(0))
    assert list(own) == [0.05, 0.25] and own[0.05] is not own[0.25]
    for area, tp in own.items():
        # stored at the largest size it is rendered at (the area times the scale jitter), so never upsampled
        assert (
            tp.patch.shape[-1]
            == patch_resolution(area * (1 + setup.scale_jitter), "square", 28, 28)
            == tp.mask.shape[-1]
        )
        assert tp.steps == 2 and 0 <= tp.patch.min() and tp.patch.max() <= 1
    shared = train_area_patches(demo_model, x, 1, setup, torch.Generator().manual_seed(0), per_area=False)
    assert shared[0.05] is shared[0.25] and shared[0.05].patch.shape[-1] == own[0.25].patch.shape[-1]


def test_trained_patch_beats_the_noise_control_on_held_out_images(demo_model, mnist):
    x, y = mnist.train.x[:400], mnist.train.y[:400]
    fit = x[y != 3][:128]
    trained = train_patch(
        demo_model, fit, 3, PatchTraining([0.25], "square", epochs=4, batch_size=32), torch.Generator().manual_seed(0)
    )
    assert trained.losses[-1] < trained.losses[0]
    held = mnist.test.x[mnist.test.y != 3][:200]
    pl = sample_placements(torch.full((200,), 0.25), "square", 28, 28, 22.5, torch.Generator().manual_seed(1))
    adv, _ = patched_predictions(demo_model, held, trained.patch, trained.mask, pl, 3, 100)
    noise, _ = patched_predictions(
        demo_model,
        held,
        noise_patch(1, trained.patch.shape[-1], torch.Generator().manual_seed(2)),
        trained.mask,
        pl,
        3,
        100,
    )
    assert (adv == 3).float().mean() > (noise == 3).float().mean() + 0.1


def test_rows_cover_every_area_and_variant_with_target_images_excluded(result, small_audit):
    _, out = result
    table = tidy(out.rows, "demo", "patch")
    success = table[table["metric"] == "targeted_success"]
    assert set(zip(success["area"], success["variant"], strict=False)) == {
        (a, v) for a in (0.1, 0.25) for v in ("patch", "noise", "real")
    }
    non_target = int((small_audit.eval.y != 3).sum())
    assert (success["n"] == non_target).all() and (success["target"] == "3").all()
    assert (success["ci_low"] <= success["value"]).all() and (success["value"] <= success["ci_high"]).all()
    # the rows are the per-sample records counted
    s = out.samples
    part = s[(s["area"] == 0.25) & (s["variant"] == "noise") & (s["label"] != 3)]
    row = success[(success["area"] == 0.25) & (success["variant"] == "noise")].iloc[0]
    assert row["value"] == pytest.approx((part["pred"] == 3).mean())
    untargeted = table[
        (table["metric"] == "untargeted_success") & (table["variant"] == "patch") & (table["area"] == 0.25)
    ].iloc[0]
    correct = s[(s["area"] == 0.25) & (s["variant"] == "patch") & (s["label"] != 3) & (s["clean_pred"] == s["label"])]
    assert untargeted["n"] == len(correct) and untargeted["value"] == pytest.approx(
        (correct["pred"] != correct["label"]).mean()
    )
    assert "min_area_targeted_90" in set(table["metric"])
    training = out.info["training"]
    assert len(training) == 1 and training[0]["patches"] == 2 and training[0]["per_area"] is True
    assert set(training[0]["loss_per_epoch"]) == {"0.1", "0.25"}
    assert {"patch-3-square", "patched-3-square"} <= set(out.figures)
    assert all(png.startswith(b"\x89PNG") for png in out.figures.values())


def test_one_shared_patch_for_all_areas(demo_model, small_audit):
    out = PatchCheck.from_options({**SMALL, "target": "3", "per_area": False, "train_images": 32, "epochs": 1}).run(
        demo_model, small_audit, CheckContext(seed=0, batch_size=128)
    )
    assert out.info["training"][0]["patches"] == 1 and out.info["training"][0]["steps"] == 1
    assert {"patch-3-square", "patched-3-square"} <= set(out.figures)
    success = pd.DataFrame(out.rows).query("metric == 'targeted_success'")
    assert set(zip(success["area"], success["variant"], strict=False)) == {
        (a, v) for a in (0.1, 0.25) for v in ("patch", "noise", "real")
    }


def test_same_seed_gives_identical_results(result, demo_model, small_audit):
    check, out = result
    again = check.run(demo_model, small_audit, CheckContext(seed=0, batch_size=64))
    pd.testing.assert_frame_equal(pd.DataFrame(out.rows), pd.DataFrame(again.rows))


PILOT = {
    **SMALL,
    "train_images": 32,
    "epochs": 1,
    "pilot_classes": 3,
    "pilot_images": 32,
    "pilot_epochs": 1,
    "areas": [0.25],
    "examples": 0,
}


def test_hardest_target_is_the_pilot_with_fewest_successes(demo_model, small_audit):
    out = PatchCheck.from_options({**PILOT, "target": "hardest"}).run(
        demo_model, small_audit, CheckContext(seed=0, batch_size=128)
    )
    table = pd.DataFrame(out.rows)
    pilots = table[table["metric"] == "pilot_targeted_success"]
    assert len(pilots) == 3
    chosen = table[table["metric"] == "targeted_success"]["target"].unique()
    assert len(chosen) == 1 and chosen[0] in set(pilots["target"])
    assert pilots.set_index("target").loc[chosen[0], "value"] == pilots["value"].min()
    assert "hardest" in out.info["target_rule"]
    assert "hardest to reach of 3 piloted" in PatchCheck().headline(tidy(out.rows, "demo", "patch")).label


def test_default_targets_are_the_most_vulnerable_pilots_and_all_are_reported(demo_model, small_audit):
    options = {**PILOT, "pilot_classes": 10, "vulnerable_targets": 2}
    out = PatchCheck.from_options(options).run(demo_model, small_audit, CheckContext(seed=0, batch_size=128))
    table = tidy(out.rows, "demo", "patch")
    pilots = table[table["metric"] == "pilot_targeted_success"]
    assert len(pilots) == 10 and (pilots["selection"] == "most vulnerable").all()
    trained = set(table[table["metric"] == "targeted_success"]["target"])
    assert trained == set(pilots[pilots["chosen"].astype(bool)]["target"]) and len(trained) == 2
    assert (
        pilots[pilots["target"].isin(trained)]["value"].min() >= pilots[~pilots["target"].isin(trained)]["value"].max()
    )
    headline = PatchCheck().headline(table)
    best = table[(table["metric"] == "targeted_success") & (table["variant"] == "patch")]["value"].max()
    assert headline.value == best and headline.where["target"] in trained
    assert (
        "most vulnerable of 10 piloted" in headline.label and f"target '{headline.where['target']}'" in headline.label
    )


def _split(labels: list[int], seed: int = 0) -> Split:
    x = torch.rand(len(labels), 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return Split(x, torch.tensor(labels), [str(i) for i in range(len(labels))])


@pytest.mark.parametrize("rule", ["vulnerable", "hardest"])
@pytest.mark.parametrize(
    "train_labels",
    [
        [0] * 20 + [1] * 20 + [2] * 20,  # 3 classes x 20 images (crashed before)
        [0, 1],  # 2 classes, one image each
        [0, 0, 0, 0, 1],  # a class with one image, 5 images in all
        [0, 0, 2, 2, 2, 0],  # a split without one class
    ],
)
def test_automatic_targets_on_tiny_training_splits(demo_model, rule, train_labels):
    classes = [str(k) for k in range(10)]
    audit = AuditData("tiny", classes, _split([0, 1, 2, 3], 1), _split(train_labels))
    options = {**PILOT, "target": rule, "pilot_images": 256}
    out = PatchCheck.from_options(options).run(demo_model, audit, CheckContext(seed=0))
    table = tidy(out.rows, "demo", "patch")
    pilots = table[table["metric"] == "pilot_targeted_success"]
    assert set(pilots["target"]) <= {classes[k] for k in set(train_labels)} and (pilots["n"] >= 1).all()
    assert set(table[table["metric"] == "targeted_success"]["target"]) <= set(pilots["target"])


def test_automatic_target_needs_two_classes(demo_model):
    audit = AuditData("tiny", ["a", "b"], _split([0, 1]), _split([1, 1, 1]))
    with pytest.raises(InvalidInputError, match="at least two classes"):
        PatchCheck.from_options(PILOT).run(demo_model, audit, CheckContext())


def test_targets_by_name_index_list_and_all():
    classes = ["cat", "dog", "cow"]
    assert parse_targets("hardest", classes) is None and parse_targets("vulnerable", classes) is None
    assert parse_targets("hardest", ["hardest", "easy"]) == [0]
    assert parse_targets("all", classes) == [0, 1, 2]
    assert parse_targets(["cow", 0, "cow"], classes) == [2, 0]
    assert parse_targets(1, classes) == [1]


@pytest.mark.parametrize(
    "options",
    [
        {"areas": [0.0, 0.1]},
        {"areas": [0.1, 1.0]},
        {"areas": [1.5]},
        {"areas": [-0.1]},
        {"areas": []},
        {"areas": 0.1},
        {"shapes": ["triangle"]},
        {"target": 2.5},
        {"max_rotation": -1},
        {"epochs": 0},
        {"per_area": "yes"},
    ],
)
def test_bad_options_are_rejected(options):
    with pytest.raises(InvalidInputError):
        PatchCheck.from_options(options)


@pytest.mark.parametrize("target", ["toaster", 10, -1, ["3", "toaster"]])
def test_target_that_is_not_a_class_is_rejected(demo_model, small_audit, target):
    with pytest.raises(InvalidInputError, match="not a class"):
        PatchCheck.from_options({**SMALL, "target": target}).run(demo_model, small_audit, CheckContext())


def _tiny_audit(h: int, w: int) -> AuditData:
    x, y = torch.rand(8, 1, h, w), torch.arange(8) % 2
    split = Split(x, y, [str(i) for i in range(8)])
    return AuditData("tiny", ["a", "b"], split, split)


def test_images_smaller_than_the_smallest_patch_are_rejected(demo_model):
    check = PatchCheck.from_options({"areas": [0.02, 0.1], "target": "a"})
    with pytest.raises(InvalidInputError, match="too small"):
        check.run(demo_model, _tiny_audit(8, 8), CheckContext())
    with pytest.raises(InvalidInputError, match="does not fit"):
        PatchCheck.from_options({"areas": [0.5], "target": "a"}).run(demo_model, _tiny_audit(6, 40), CheckContext())


def test_missing_training_split_is_rejected(demo_model, small_audit):
    with pytest.raises(InvalidInputError, match="training split"):
        PatchCheck.from_options({**SMALL, "target": "3"}).run(
            demo_model, AuditData("x", small_audit.classes, small_audit.eval), CheckContext()
        )


def test_audit_through_the_api(tmp_path):
    from robustcnn.api import audit

    options = {
        **SMALL,
        "target": ["3"],
        "train_images": 64,
        "epochs": 1,
        "areas": [0.25],
        "examples": 0,
        "per_area": False,
    }
    report = audit(
        model="demo:mnist-cnn", data="mnist5k", checks=["patch"], options={"patch": options}, n=40, out=tmp_path, seed=0
    )
    rows = report.table[(report.table["check"] == "patch") & (report.table["metric"] == "targeted_success")]
    assert set(rows["variant"]) == {"patch", "noise", "real"}
    assert (rows["n"] == rows["n"].iloc[0]).all() and 30 <= rows["n"].iloc[0] <= 40
