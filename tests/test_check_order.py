"""Artifact keys, the typed container, and the run order derived from what checks need, use and provide."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustcnn.artifacts import ADVERSARIAL_EXAMPLES, ArtifactKey, Artifacts
from robustcnn.checks import PLUGINS, Check, CheckOutput, load_registry, run_order
from robustcnn.checks import registry as registry_module
from robustcnn.checks.order import CATALOGUE, ordered, registry_order
from robustcnn.cli import main
from robustcnn.errors import InvalidInputError
from robustcnn.runner import build_tasks

A = ArtifactKey("test-a/out", torch.Tensor)
B = ArtifactKey("test-b/out", torch.Tensor)


def fake(name: str, needs=(), uses=(), provides=()) -> type[Check]:
    attrs = {"name": name, "needs": tuple(needs), "uses": tuple(uses), "provides": tuple(provides)}
    return type(f"Fake{name.title()}", (Check,), attrs)


def names(checks) -> list[str]:
    return [c.name for c in checks]


def test_the_registry_lists_built_ins_in_catalogue_order_with_providers_first():
    registry = load_registry()
    built_in = [n for n in registry if n not in PLUGINS]
    assert built_in == list(CATALOGUE)
    position = {name: i for i, name in enumerate(registry)}
    for cls in registry.values():
        for key in (*cls.needs, *cls.uses):
            for provider in (p for p in registry.values() if key in p.provides):
                assert position[provider.name] < position[cls.name], (provider.name, cls.name)


def test_a_provider_moves_before_its_consumers_and_the_rest_keep_their_order():
    consumer, other, provider = fake("consumer", uses=[A]), fake("other"), fake("provider", provides=[A])
    assert names(ordered([consumer, other, provider])) == ["other", "provider", "consumer"]
    assert names(ordered([other, consumer])) == ["other", "consumer"]  # an absent provider of a used key is fine


def test_a_cycle_is_refused_naming_it():
    a, b = fake("a", needs=[B], provides=[A]), fake("b", needs=[A], provides=[B])
    with pytest.raises(InvalidInputError, match=r"cycle: a -> b -> a$"):
        ordered([a, b, fake("c")])


def test_two_providers_of_one_artifact_are_refused():
    with pytest.raises(InvalidInputError, match="checks 'a' and 'b' both provide artifact 'test-a/out'"):
        ordered([fake("a", provides=[A]), fake("b", provides=[A])])


def test_a_needed_artifact_without_its_provider_is_refused():
    consumer, provider = fake("consumer", needs=[A]), fake("provider", provides=[A])
    with pytest.raises(InvalidInputError, match="from check 'provider', which is not among the checks run"):
        ordered([consumer], known=[consumer, provider])
    with pytest.raises(InvalidInputError, match="which no installed check provides"):
        ordered([consumer])
    assert names(registry_order([consumer])) == ["consumer"]  # listing it is fine; running it is not


def test_declarations_must_be_artifact_keys():
    with pytest.raises(InvalidInputError, match="check 'old': uses must be a tuple of ArtifactKey"):
        ordered([fake("old", uses=["adversarial/examples"])])


def test_selecting_a_check_without_the_provider_it_needs_is_one_line_and_exit_4(monkeypatch, tmp_path):
    monkeypatch.setitem(
        registry_module.REGISTRY, "needs-adversarial", fake("needs-adversarial", [ADVERSARIAL_EXAMPLES])
    )
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["audit", "--checks", "needs-adversarial", "--n", "4", "--out", str(out)])
    assert result.exit_code == 4
    assert result.output.strip() == (
        "robustcnn: error: check 'needs-adversarial' needs artifact 'adversarial/examples' from check 'adversarial', "
        "which is not among the checks run"
    )
    assert not out.exists()
    assert names(run_order([load_registry()[n]() for n in ("needs-adversarial", "clean", "adversarial")])) == [
        "clean",
        "adversarial",
        "needs-adversarial",
    ]


def test_a_plugin_that_breaks_the_order_is_refused():
    problem = registry_module._contract_problem(fake("second-adversarial", provides=[ADVERSARIAL_EXAMPLES]))
    assert problem == "checks 'adversarial' and 'second-adversarial' both provide artifact 'adversarial/examples'; " + (
        "only one check may provide it"
    )
    assert registry_module._contract_problem(fake("fine", uses=[ADVERSARIAL_EXAMPLES], provides=[A])) is None


def test_a_checks_fragments_are_keyed_on_its_providers_only():
    registry = load_registry()
    prepared = SimpleNamespace(data=SimpleNamespace(eval=SimpleNamespace(ids=[f"s{i}" for i in range(6)])))

    def keys(adversarial_options: dict) -> dict[str, str]:
        checks = [registry["adversarial"].from_options(adversarial_options)]
        checks += [registry[n]() for n in ("corruptions", "confidence")]
        tasks = build_tasks(checks, prepared, ("base",), None)
        return {name: "".join(t.key for t in ts) for name, ts in tasks.items()}

    before, after = keys({}), keys({"norms": ["l2"]})
    assert before["adversarial"] != after["adversarial"]
    assert before["corruptions"] == after["corruptions"]  # it reads nothing from adversarial
    assert before["confidence"] != after["confidence"]  # it uses adversarial examples


def test_the_container_checks_types_and_keys():
    box = Artifacts({A: torch.zeros(2)})
    assert torch.equal(box[A], torch.zeros(2)) and box.get(B) is None and A in box and len(box) == 1
    with pytest.raises(TypeError, match="artifact 'test-b/out' must be a Tensor, not a ndarray"):
        box.put(B, np.zeros(2))
    with pytest.raises(TypeError, match="keyed by ArtifactKey"):
        box.put("test-b/out", torch.zeros(1))  # type: ignore[arg-type]
    box.put(B, torch.ones(1))
    assert list(box.only([B])) == [B]
    restored = Artifacts.from_names(box.by_name())
    assert list(restored) == [A, B] and torch.equal(restored[B], torch.ones(1))
    with pytest.raises(KeyError):
        Artifacts.from_names({"never-declared/x": torch.zeros(1)})


def test_a_key_name_cannot_change_its_type():
    assert ArtifactKey("test-a/out", torch.Tensor) == A
    with pytest.raises(TypeError, match="declared twice"):
        ArtifactKey("test-a/out", int)


def test_a_check_sees_only_the_artifacts_it_declared(tmp_path):
    from robustcnn import api

    seen: dict[str, list[str]] = {}

    class Spy(Check):
        name = "spy"
        uses = (ADVERSARIAL_EXAMPLES,)

        def run(self, model, data, ctx):
            seen["keys"] = [k.name for k in ctx.artifacts]
            return CheckOutput(rows=[{"metric": "seen", "value": float(len(seen["keys"]))}])

    options = {
        "adversarial": {"norms": ["linf"], "attacks": ["fgsm"], "unbounded_images": 0},
        "corruptions": {"severities": [5], "corruptions": ["contrast"]},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry_module.REGISTRY, "spy", Spy)
        api.audit(checks=["spy", "corruptions", "adversarial"], options=options, n=8, out=tmp_path / "r")
    assert seen["keys"] == ["adversarial/examples"]
