"""The ``confidence`` check on the demo CNN: rows, artifacts of other checks, generated sets,
a user OOD dataset, bad options and models that output probabilities."""

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustcnn.checks import CheckContext, get_check
from robustcnn.checks.audits.confidence import ConfidenceCheck
from robustcnn.errors import InvalidInputError
from robustcnn.methods.confidence.ood_sets import build_sets, pgd_examples, shifted_images, simple_corruptions
from robustcnn.models import AuditedModel
from robustcnn.results.schema import tidy

QUICK = {
    "noise_n": 60,
    "fooling_n": 10,
    "fooling_steps": 25,
    "fooling_step_size": 0.03,
    "adversarial_n": 20,
    "corruption_n": 30,
}


def _rows(out) -> pd.DataFrame:
    return pd.DataFrame(out.rows)


def _one(df, **where) -> pd.Series:
    mask = np.ones(len(df), dtype=bool)
    for k, v in where.items():
        mask &= (df[k] == v).to_numpy()
    assert mask.sum() == 1, where
    return df[mask].iloc[0]


def test_registered_after_the_other_checks():
    cls = get_check("confidence")
    assert cls is ConfidenceCheck and cls.order == 90


def test_full_run_on_demo_cnn(demo_model, mnist_audit, ctx):
    out = ConfidenceCheck.from_options(QUICK).run(demo_model, mnist_audit, ctx)
    df = _rows(out)
    sets = {"gaussian-noise", "uniform-noise", "fooling-gradient", "adversarial", "corruptions"}
    assert set(out.info["sets"]) == sets
    assert any("fooling-evolution" in w and "skipped" in w for w in ctx.warnings)
    for score in ("msp", "max_logit", "energy", "neg_entropy"):
        kept = _one(df, metric="clean_accepted", score=score)
        assert kept["value"] >= 0.95 and kept["n"] == 200
        for s in sets:
            acc = _one(df, metric="accepted_share", score=score, ood=s)
            fpr = _one(df, metric="fpr_at_tpr", score=score, ood=s)
            assert acc["value"] == pytest.approx(fpr["value"])
            assert acc["ci_low"] <= acc["value"] <= acc["ci_high"] + 1e-12
            assert 0 <= _one(df, metric="auroc", score=score, ood=s)["value"] <= 1
            assert _one(df, metric="auroc", score=score, ood=s)["source"] == out.info["sets"][s]
    fooling = out.samples[out.samples["set"] == "fooling-gradient"]
    reached = int(out.info["sets"]["fooling-gradient"].split("; ")[1].split("/")[0])
    assert reached >= 8 and int((fooling["msp"] >= 0.9999).sum()) == reached
    worst = _one(df, metric="worst_accepted_share")
    msp_accepted = df[(df.metric == "accepted_share") & (df.score == "msp")]
    assert worst["value"] == msp_accepted["value"].max() and worst["ood"] in sets
    assert _one(df, metric="ece", score="msp")["value"] < 0.1
    assert _one(df, metric="misclassification_auroc", score="msp")["value"] > 0.8
    n_sets = len(sets)
    assert (df.metric == "od_accuracy").sum() == 4 * n_sets * n_sets
    assert set(out.figures) == {"reliability", "risk_coverage", "score_histograms", "most_confident_bad_inputs"}
    assert all(png.startswith(b"\x89PNG") for png in out.figures.values())
    assert set(out.samples["set"]) == sets | {"clean"}
    table = tidy(out.rows, "m", "confidence")
    label, v = (h := ConfidenceCheck().headline(table)).label, h.value
    assert v == worst["value"] and "95%" in label


def test_artifacts_of_other_checks_are_used(demo_model, mnist_audit):
    clean_x = mnist_audit.eval.x
    ctx = CheckContext(
        seed=0,
        artifacts={"adversarial/examples": clean_x.clone(), "fooling-evolution/images": torch.zeros(0, 1, 28, 28)},
    )
    cfg = {"sets": ["adversarial", "fooling-evolution"], "generate_missing": False}
    out = ConfidenceCheck.from_options(cfg).run(demo_model, mnist_audit, ctx)
    df = _rows(out)
    row = _one(df, metric="auroc", score="msp", ood="adversarial")
    assert row["source"] == "artifact adversarial/examples"
    assert row["value"] == pytest.approx(0.5)
    assert _one(df, metric="accepted_share", score="msp", ood="adversarial")["value"] == pytest.approx(0.95)
    assert any("fooling-evolution" in w and "skipped" in w for w in ctx.warnings)


def test_artifact_with_other_size_is_resized(demo_model, mnist_audit, ctx):
    ctx.artifacts["corruptions/severity5"] = torch.rand(12, 3, 32, 32)
    cfg = ConfidenceCheck.from_options({"sets": ["corruptions"]}).config
    sets, notes = build_sets(demo_model, mnist_audit, cfg, ctx)
    assert sets[0].images.shape == (12, 1, 28, 28)
    assert any("resized 32x32 to 28x28" in n for n in notes)


def test_generated_sets_are_seeded(demo_model, mnist_audit):
    cfg = ConfidenceCheck.from_options({**QUICK, "sets": ["gaussian-noise", "corruptions"], "max_per_set": 40}).config
    a, _ = build_sets(demo_model, mnist_audit, cfg, CheckContext(seed=3))
    b, _ = build_sets(demo_model, mnist_audit, cfg, CheckContext(seed=3))
    c, _ = build_sets(demo_model, mnist_audit, cfg, CheckContext(seed=4))
    assert all(torch.equal(x.images, y.images) for x, y in zip(a, b, strict=False))
    assert not torch.equal(a[0].images, c[0].images)
    assert len(a[0].images) == 40 and "random 40 of 60" in a[0].source
    assert a[0].images.min() == 0 and a[0].images.max() == 1


def test_generated_adversarial_examples_are_misclassified(demo_model, mnist_audit):
    x, y = mnist_audit.eval.x[:30], mnist_audit.eval.y[:30]
    adv = pgd_examples(demo_model, x, y, 0.15, 10, torch.Generator().manual_seed(0))
    assert len(adv) >= 5
    assert 0 <= adv.min() and adv.max() <= 1
    pred = demo_model.logits(adv).argmax(1)
    distances = (adv[:, None] - x[None]).flatten(2).abs().amax(2)
    nearest = distances.argmin(1)
    assert torch.all(distances.min(1).values <= 0.15 + 1e-6)
    assert torch.all(pred != y[nearest])


def test_corruptions_use_the_shifts_module_or_fall_back(mnist_audit, monkeypatch):
    pytest.importorskip("robustcnn.methods.shifts")
    x = mnist_audit.eval.x[:30]
    out, source = shifted_images(x, torch.Generator().manual_seed(0))
    assert "robustcnn.methods.shifts.corrupt" in source and out.shape == x.shape
    assert torch.all((out - x).flatten(1).abs().amax(1) > 0)
    monkeypatch.setitem(sys.modules, "robustcnn.methods.shifts", None)
    _, fallback = shifted_images(x, torch.Generator().manual_seed(0))
    assert fallback.startswith("generated: Gaussian noise 0.38")


def test_simple_corruptions_change_every_image(mnist_audit):
    x = mnist_audit.eval.x[:9]
    out = simple_corruptions(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.all((out - x).flatten(1).abs().amax(1) > 0.1)


def test_user_ood_dataset_is_resized_with_a_note(demo_model, mnist_audit, tmp_path):
    path = tmp_path / "letters.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (15, 14, 14, 3), dtype=np.uint8), y=np.zeros(15, dtype=np.int64))
    ctx = CheckContext(seed=0)
    out = ConfidenceCheck.from_options({"sets": [], "ood": str(path)}).run(demo_model, mnist_audit, ctx)
    df = _rows(out)
    row = _one(df, metric="accepted_share", score="msp", ood="user:letters")
    assert row["n"] == 15 and row["source"] == f"user dataset {path}"
    assert any("resized 14x14 to 28x28" in w for w in ctx.warnings)
    assert any("converted 3 to 1 channels" in w for w in ctx.warnings)


def test_user_ood_folder_decodes_only_a_seeded_sample_of_max_per_set(demo_model, mnist_audit, tmp_path, monkeypatch):
    from PIL import Image

    from robustcnn.data.files import FileSource

    folder = tmp_path / "shapes" / "blob"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    decoded = []
    read = FileSource.read
    monkeypatch.setattr(FileSource, "read", lambda self, pos, *a: decoded.extend(pos) or read(self, pos, *a))
    runs = []
    for _ in range(2):
        ctx = CheckContext(seed=0)
        out = ConfidenceCheck.from_options({"sets": [], "ood": str(tmp_path / "shapes"), "max_per_set": 5}).run(
            demo_model, mnist_audit, ctx
        )
        runs.append(_one(_rows(out), metric="mean_score", score="msp", ood="user:shapes"))
    assert len(decoded) == 10 and decoded[:5] == decoded[5:]  # 5 of 12 files, the same 5 each time
    assert runs[0]["n"] == 5 and runs[0]["source"] == f"user dataset {tmp_path / 'shapes'}; random 5 of 12"
    assert runs[0]["value"] == runs[1]["value"]


def test_empty_user_ood_dataset_is_a_clear_error(demo_model, mnist_audit, ctx, tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((0, 28, 28), dtype=np.uint8), y=np.zeros(0, dtype=np.int64))
    with pytest.raises(InvalidInputError, match=r"ood dataset .*no evaluation images"):
        ConfidenceCheck.from_options({"sets": [], "ood": str(path)}).run(demo_model, mnist_audit, ctx)
    with pytest.raises(InvalidInputError, match="ood dataset"):
        ConfidenceCheck.from_options({"sets": [], "ood": str(tmp_path / "missing.npz")}).run(
            demo_model, mnist_audit, ctx
        )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scores": ["softmax"]}, "option 'scores' must be a non-empty list of names from 'msp'"),
        ({"scores": []}, "option 'scores' must be a non-empty list"),
        ({"primary_score": "energy", "scores": ["msp"]}, r"option 'primary_score' must be one of scores \['msp'\]"),
        ({"sets": ["imagenet"]}, "option 'sets' must be a list of names from"),
        ({"sets": []}, "option 'sets' must name an OOD set when no 'ood' dataset is given"),
        ({"tpr": 1.0}, r"option 'tpr' must be a number in \[0.5, 1\)"),
        ({"noise_n": 0}, "option 'noise_n' must be an integer >= 1"),
        ({"adversarial_eps": 8}, r"option 'adversarial_eps' must be a number in \(0, 1\]"),
        ({"bins": 10}, "has no option"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(InvalidInputError, match=message):
        ConfidenceCheck.from_options(options)


def test_probability_outputs_documented_behaviour(demo_model, mnist_audit, mnist):
    prob_model = AuditedModel(nn.Sequential(demo_model.net, nn.Softmax(dim=1)), 10, 1, (28, 28), name="softmaxed")
    prob_model.validate(mnist.test.x[:2])
    assert prob_model.outputs_probabilities
    cfg = {"sets": ["uniform-noise"], "noise_n": 50}
    ctx_p, ctx_l = CheckContext(seed=0), CheckContext(seed=0)
    df_p = _rows(ConfidenceCheck.from_options(cfg).run(prob_model, mnist_audit, ctx_p))
    df_l = _rows(ConfidenceCheck.from_options(cfg).run(demo_model, mnist_audit, ctx_l))
    assert set(df_p["score"].dropna()) == {"msp", "neg_entropy"}
    assert any("probabilities" in w and "max_logit, energy" in w for w in ctx_p.warnings)
    for score in ("msp", "neg_entropy"):
        p = _one(df_p, metric="auroc", score=score, ood="uniform-noise")["value"]
        z = _one(df_l, metric="auroc", score=score, ood="uniform-noise")["value"]
        assert p == pytest.approx(z, abs=0.01)
