"""--checks profiles, families and all; the announced selection; --set for an unselected check;
progress lines when stderr is not a terminal; penultimate features whatever the model format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner

from robustcnn.checks import load_registry
from robustcnn.cli import main
from robustcnn.errors import InvalidInputError
from robustcnn.estimate import CostInputs
from robustcnn.methods.bias.labels import cross_validated_probabilities, penultimate_features
from robustcnn.models import AuditedModel
from robustcnn.profiles import PROFILES, families, resolve_checks


def run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_all_and_every_profile_select_every_check_and_only_named_ones_are_required():
    every = set(load_registry())
    assert set(resolve_checks("all").checks) == every
    for name, profile in PROFILES.items():
        selection = resolve_checks(name)
        assert set(selection.checks) == every and selection.n == profile.n and selection.profile == name
        for check, options in selection.options.items():
            load_registry()[check].from_options(options)  # every budget is a valid option table
    mixed = resolve_checks("clean,natural-shifts")
    assert mixed.checks[0] == "clean" and set(mixed.checks[1:]) == set(families()["natural-shifts"])
    assert mixed.optional == mixed.checks[1:]


def profile_passes(profile: str, shape: tuple[int, int, int], n: int, accuracy: float) -> dict[str, int]:
    """Per check of ``profile``: its planned model passes, a backward pass counted as two forward ones."""
    registry, selection, before, out = load_registry(), resolve_checks(profile), [], {}
    for name in selection.checks:
        check = registry[name].from_options(selection.options.get(name, {}))
        passes = check.estimate_passes(CostInputs(n, shape, 10, 1000, 32, tuple(before), accuracy))
        out[name], before = passes.forward + 2 * passes.backward, [*before, name]
    return out


@pytest.mark.parametrize("accuracy", [0.1, 1.0])
def test_quick_plans_fewer_model_passes_than_standard_for_every_check_at_photo_size(accuracy):
    quick, standard = (profile_passes(p, (3, 224, 224), 100, accuracy) for p in ("quick", "standard"))
    assert all(quick[name] <= standard[name] for name in quick), (quick, standard)
    assert sum(quick.values()) * 5 <= sum(standard.values())
    # occlusion: at most 7 x 7 window positions per image (one unoccluded pass besides, per captum run)
    assert quick["occlusion"] <= 100 * (2 + 49) + round(100 * accuracy) * (1 + 49)


@pytest.mark.parametrize(
    "text, message", [("quick,thorough", "two profiles"), ("clean,bogus", "unknown check 'bogus'"), (",", "no checks")]
)
def test_bad_check_selections_are_errors(text, message):
    with pytest.raises(InvalidInputError, match=message):
        resolve_checks(text)


def test_the_default_is_announced_and_set_for_an_unselected_check_is_refused(tmp_path):
    code, out = run("audit", "--model", "demo:mnist-cnn", "--data", "digits", "--n", "10", "--out", str(tmp_path / "r"))
    assert code == 0, out
    assert "running checks: clean (the default; --checks all|quick|standard|thorough" in out
    # CliRunner's stderr is no terminal: one line per finished task
    assert "robustcnn: [1/2] clean: task done" in out and "robustcnn: [2/2] clean: task done" in out
    code, out = run(
        "audit",
        "--model",
        "demo:mnist-cnn",
        "--data",
        "digits",
        "--n",
        "10",
        "--out",
        str(tmp_path / "q"),
        "--no-progress",
        "--set",
        "adversarial.bogus=1",
    )
    assert code == 4 and "Traceback" not in out
    assert "--set adversarial.bogus=1 sets an option of check 'adversarial', which is not selected" in out
    assert "task done" not in out


def test_a_profile_skips_checks_the_data_cannot_feed(tmp_path):
    code, out = run(
        "audit",
        "--model",
        "demo:mnist-cnn",
        "--data",
        "digits",
        "--checks",
        "audits",
        "--n",
        "20",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert code == 0, out
    assert "skipping groups" in out and "label-issues" in out
    code, out = run(
        "audit",
        "--model",
        "demo:mnist-cnn",
        "--data",
        "digits",
        "--checks",
        "groups",
        "--n",
        "20",
        "--out",
        str(tmp_path / "g"),
        "--no-progress",
    )
    assert code == 4, out


def test_penultimate_features_of_torchscript_and_exported_resnets_match_the_eager_ones():
    net = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.rand(5, 3, 32, 32)
    reference = penultimate_features(AuditedModel(net, 3, 3, (32, 32)), x, 4)
    exported = torch.export.export(net, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},)).module()
    for module in (torch.jit.script(net), exported):
        model = AuditedModel(module, 3, 3, (32, 32))
        features = penultimate_features(model, x, 4)
        assert features is not None and features.shape == (5, 512)
        np.testing.assert_allclose(features, reference, atol=1e-5)
        torch.testing.assert_close(model.logits(x), net(x).detach(), atol=1e-5, rtol=1e-5)  # the head is restored


def test_cross_validation_on_wide_features_and_few_images():
    gen = np.random.default_rng(0)
    features, labels = gen.normal(size=(24, 512)), np.repeat(np.arange(3), 8)
    probabilities = cross_validated_probabilities(features, labels, 5, 0)
    assert probabilities.shape == (24, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1)
