"""Our own attacks (APGD, Square) and losses: valid points, honest success flags, paper schedules,
and strength cross-checked against foolbox's PGD."""

import foolbox as fb
import pytest
import torch

from robustcnn.methods.perturbation import apgd, dlr, margin, square_attack
from robustcnn.methods.perturbation.apgd import checkpoints
from robustcnn.methods.perturbation.geometry import lp_norm
from robustcnn.methods.perturbation.losses import dlr_targeted
from robustcnn.methods.perturbation.square import square_fraction


@pytest.fixture(scope="module")
def batch(mnist):
    return mnist.test.x[:24], mnist.test.y[:24]


def test_apgd_checkpoints_follow_croce_hein():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1) == []


def test_square_schedule_halves_at_the_paper_iterations():
    assert square_fraction(0.8, 0, 10000) == 0.8
    assert square_fraction(0.8, 11, 10000) == 0.4
    assert square_fraction(0.8, 501, 10000) == pytest.approx(0.8 / 16)
    assert square_fraction(0.8, 50, 1000) == pytest.approx(0.8 / 8)
    assert square_fraction(0.8, 51, 1000) == pytest.approx(0.8 / 16)  # rescaled to the budget


def test_dlr_is_scale_and_shift_invariant_and_falls_back_to_margin_below_three_classes():
    gen = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 5, generator=gen), torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.allclose(dlr(logits * 7 + 3, y), dlr(logits, y), atol=1e-5)
    two = torch.randn(6, 2, generator=gen)
    y2 = torch.tensor([0, 1, 0, 1, 0, 1])
    assert torch.allclose(dlr(two, y2), -margin(two, y2))
    assert torch.allclose(
        margin(two, y2), two.gather(1, y2[:, None]).squeeze(1) - two.gather(1, (1 - y2)[:, None]).squeeze(1)
    )


def test_targeted_dlr_is_invariant_and_falls_back_to_the_targeted_margin_below_four_classes():
    gen = torch.Generator().manual_seed(1)
    logits, y, t = torch.randn(5, 6, generator=gen), torch.tensor([0, 1, 2, 3, 4]), torch.tensor([1, 2, 3, 4, 5])
    assert torch.allclose(dlr_targeted(logits * 5 - 2, y, t), dlr_targeted(logits, y, t), atol=1e-5)
    three = logits[:, :3]
    y3, t3 = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([1, 2, 0, 2, 0])
    assert torch.allclose(dlr_targeted(three, y3, t3), -margin(three, y3, t3))


def test_targeted_apgd_counts_any_misclassification(demo_model, batch):
    x, y = batch
    target = (y + 1) % 10
    run = apgd(
        demo_model, x, y, 0.15, "linf", "dlr-t", steps=10, generator=torch.Generator().manual_seed(0), target=target
    )
    assert torch.equal(run.success, demo_model.logits(run.adversarial).argmax(1) != y)
    assert run.success.any()


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_points_are_in_ball_and_box_and_successes_are_real(demo_model, batch, norm, eps, loss):
    x, y = batch
    run = apgd(demo_model, x, y, eps, norm, loss, steps=10, generator=torch.Generator().manual_seed(0))
    assert (lp_norm(run.adversarial - x, norm) <= eps + 1e-5).all()
    assert run.adversarial.min() >= 0 and run.adversarial.max() <= 1
    pred = demo_model.logits(run.adversarial).argmax(1)
    assert torch.equal(run.success, pred != y)
    assert 0 < run.success.sum() < len(x)


def test_apgd_with_zero_budget_breaks_nothing_correct(demo_model, batch):
    x, y = batch
    run = apgd(demo_model, x, y, 0.0, "linf", "ce", steps=5)
    assert torch.equal(run.success, demo_model.logits(x).argmax(1) != y)


def test_apgd_is_at_least_as_strong_as_foolbox_pgd(demo_model, mnist):
    x, y = mnist.test.x[100:148], mnist.test.y[100:148]
    ours = apgd(demo_model, x, y, 0.08, "linf", "ce", steps=20, generator=torch.Generator().manual_seed(1)).success
    torch.manual_seed(1)
    _, _, theirs = fb.attacks.LinfPGD(steps=20)(fb.PyTorchModel(demo_model, bounds=(0, 1)), x, y, epsilons=0.08)
    assert ours.sum() >= theirs.sum() - 2


@pytest.mark.parametrize("norm,eps,floor", [("linf", 0.3, 0.8), ("l2", 4.0, 0.5)])
def test_square_finds_real_adversarials_inside_the_ball(demo_model, mnist, norm, eps, floor):
    x, y = mnist.test.x[:16], mnist.test.y[:16]
    run = square_attack(demo_model, x, y, eps, norm, queries=150, generator=torch.Generator().manual_seed(0))
    assert (lp_norm(run.adversarial - x, norm) <= eps + 1e-5).all()
    assert run.adversarial.min() >= 0 and run.adversarial.max() <= 1
    assert torch.equal(run.success, demo_model.logits(run.adversarial).argmax(1) != y)
    assert run.success.float().mean() >= floor


def test_square_reads_no_gradient(demo_model, mnist):
    x, y = mnist.test.x[:8], mnist.test.y[:8]
    with torch.no_grad():
        run = square_attack(demo_model, x, y, 0.3, "linf", queries=100, generator=torch.Generator().manual_seed(0))
    assert run.success.any()
