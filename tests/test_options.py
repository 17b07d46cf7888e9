"""The one options schema: declarations, coercion, the one message format, listing and generated docs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from robustcnn.checks import PLUGINS, load_registry
from robustcnn.checks.imperceptible_perturbations.adversarial import AdversarialCheck
from robustcnn.checks.natural_shifts.noise import NoiseCheck
from robustcnn.cli import main
from robustcnn.docs_gen import BLOCK, DOCS, render
from robustcnn.errors import InvalidInputError, UsageError
from robustcnn.methods.perturbation import AttackSettings
from robustcnn.options import Range, Rule, group, option, options_of, read_options, validate_options
from robustcnn.plan import merge_options, parse_set

BUILT_IN = {name: cls for name, cls in load_registry().items() if name not in PLUGINS}
MESSAGE = re.compile(r"^check '[\w-]+': option '\w+' must .+, got .+$")


@dataclass(frozen=True)
class Budget:
    steps: int = option(10, "steps", range=">= 1")


@dataclass
class Toy:
    rate: float = option(0.5, "a share", range="(0, 1]", unit="share")
    names: list[str] = option(["a"], "names", choices=("a", "b"), nonempty=True, distinct=True)
    on: bool = option(True, "switch")
    size: int | None = option(None, "auto when unset", range=">= 2")
    value: float | str = option(0.0, "a number or 'mean'", range="[0, 1]", choices=("mean",))
    budget: Budget = group(Budget)

    rules = (Rule("size", "must be unset when on is {on}", lambda c: not (c.on is False and c.size is not None)),)


def test_ranges_read_and_print_as_written():
    for text in ("[0, 1]", "(0, 1]", "[0.5, 1)", ">= 1", "> 0", "<= 180"):
        assert str(Range.parse(text)) == text
    half_open = Range.parse("[0, 1)")
    assert 0 in half_open and 0.999 in half_open and 1 not in half_open and -0.1 not in half_open
    assert 0 not in Range.parse("> 0") and math.inf in Range.parse(">= 1")
    with pytest.raises(ValueError, match="not a range"):
        Range.parse("0 to 1")


def test_set_strings_are_coerced_to_the_declared_type():
    toy = read_options("toy", Toy, {"rate": "0.25", "on": "false", "steps": "3", "value": "mean"})
    assert toy.rate == 0.25 and toy.on is False and toy.budget == Budget(3) and toy.value == "mean"
    assert read_options("toy", Toy, {"rate": 1}).rate == 1  # an int given for a float is kept as given
    assert read_options("toy", Toy, {"value": "0.5"}).value == 0.5


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rate": 0}, r"option 'rate' must be a number in \(0, 1\] \(share\), got 0"),
        ({"rate": math.nan}, r"option 'rate' must be a number in \(0, 1\] \(share\), got nan"),
        ({"rate": True}, "option 'rate' must be a number"),
        ({"names": ["a", "c"]}, "option 'names' must be a non-empty list of distinct names from 'a', 'b'"),
        ({"names": []}, "option 'names' must be a non-empty list"),
        ({"names": ["a", "a"]}, "distinct"),
        ({"names": "a"}, "option 'names' must be a non-empty list"),
        ({"on": 1}, "option 'on' must be true or false, got 1"),
        ({"size": 1}, "option 'size' must be an integer >= 2, got 1"),
        ({"size": 2.0}, "option 'size' must be an integer >= 2, got 2.0"),
        ({"value": 2}, r"option 'value' must be a number in \[0, 1\] or one of 'mean', got 2"),
        ({"value": "grey"}, "or one of 'mean', got 'grey'"),
        ({"steps": 0}, "option 'steps' must be an integer >= 1"),
        ({"on": False, "size": 3}, "option 'size' must be unset when on is False, got 3"),
    ],
)
def test_bad_values_get_one_line_in_one_format(options, message):
    with pytest.raises(InvalidInputError, match=message) as err:
        read_options("toy", Toy, options)
    assert MESSAGE.match(str(err.value)) and str(err.value).startswith("check 'toy': ")


def test_unknown_names_are_refused_with_a_suggestion_when_one_is_close():
    with pytest.raises(InvalidInputError, match=r"check 'toy' has no option 'rat' \(did you mean 'rate'\?\)"):
        read_options("toy", Toy, {"rat": 1})
    with pytest.raises(InvalidInputError) as err:
        read_options("toy", Toy, {"zzz": 1})
    assert "did you mean" not in str(err.value) and "options: budget" not in str(err.value)
    assert "options: names, on, rate, size, steps, value" in str(err.value)


def test_configs_built_in_code_are_checked_the_same_way():
    with pytest.raises(
        InvalidInputError, match=r"^check 'noise': option 'n' must be an integer >= 1 \(images\), got 0$"
    ):
        NoiseCheck(NoiseCheck.Config(n=0))
    validate_options("toy", Toy())


def test_attack_settings_are_composed_into_the_adversarial_options():
    names = {o.name for o in options_of(AttackSettings)}
    check = AdversarialCheck.from_options({"fmn_steps": 7, "square_p_init": 0.5})
    assert isinstance(check.config.attack, AttackSettings) and check.config.attack.fmn_steps == 7
    assert names <= set(check.config_dict()) and check.config_dict()["square_p_init"] == 0.5
    assert not names & set(AdversarialCheck.Config.__dataclass_fields__)  # not copied field by field


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_option_is_declared_and_every_bad_number_is_refused_in_the_one_format(name):
    cls = BUILT_IN[name]
    default = cls.from_options({})
    assert cls.from_options(default.config_dict()).config_dict() == default.config_dict()
    for o in options_of(cls.Config):
        assert o.spec.help, f"{name}.{o.name} has no help text"
        bounds = o.spec.range
        if bounds is None:
            continue
        outside = bounds.low - 1 if not math.isinf(bounds.low) else bounds.high + 1
        wrong = [outside] if "list" in str(o.type) else outside
        with pytest.raises(InvalidInputError) as err:
            cls.from_options({o.name: wrong})
        assert str(err.value).startswith(f"check '{name}': option '{o.name}' must be "), str(err.value)


def test_docs_option_tables_match_the_declarations():
    registry = load_registry()
    documented = set()
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        documented |= {m["name"] for m in BLOCK.finditer(text)}
        assert render(text, registry) == text, f"{path} is stale: run python -m robustcnn.docs_gen"
    assert documented == {name for name, cls in BUILT_IN.items() if options_of(cls.Config)}


def test_docs_drift_is_detected():
    text = (DOCS / "noise.md").read_text(encoding="utf-8")
    drifted = text.replace("| images of each kind |", "| images of each kind, or so |")
    assert drifted != text and render(drifted, load_registry()) == text


def test_list_options_prints_the_table():
    result = CliRunner().invoke(main, ["list", "--options", "noise"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("options of noise ([checks.noise]")
    assert lines[1].split() == ["option", "type", "default", "range/choices", "unit", "meaning"]
    assert lines[2].split()[:5] == ["n", "int", "1000", ">=", "1"] and "images of each kind" in lines[2]
    every = CliRunner().invoke(main, ["list", "--options", "all"])
    assert every.exit_code == 0 and all(f"options of {name} " in every.output for name in BUILT_IN)
    assert "also checked: stride must not exceed window" in every.output
    unknown = CliRunner().invoke(main, ["list", "--options", "nosie"])
    assert unknown.exit_code == 4 and "unknown check 'nosie'" in unknown.output


def test_overrides_are_parsed_and_merged_option_by_option():
    given = parse_set(["noise.n=5", "noise.kinds=['uniform']", "occlusion.baseline=mean"])
    assert given == {"noise": {"n": 5, "kinds": ["uniform"]}, "occlusion": {"baseline": "mean"}}
    plan = {"noise": {"n": 100, "std": 0.1}}
    assert merge_options({"noise": {"mean": 0.4}}, plan, given) == {
        "noise": {"mean": 0.4, "n": 5, "std": 0.1, "kinds": ["uniform"]},
        "occlusion": {"baseline": "mean"},
    }
    assert plan == {"noise": {"n": 100, "std": 0.1}}  # inputs are not changed
    with pytest.raises(UsageError, match=r"--set takes CHECK\.KEY=VALUE"):
        parse_set(["noise=5"])


def test_a_config_built_in_code_is_returned_coerced_and_other_declared_types_pass_through():
    @dataclass
    class Loose:  # a plugin's Config without option(): the annotations alone are checked
        size: tuple[int, int] = (2, 2)
        table: dict = None  # type: ignore[assignment]
        steps: int = 3

    check = NoiseCheck(NoiseCheck.Config(n="5", thresholds=(0.5,)))
    assert check.config.n == 5 and check.config.thresholds == [0.5]
    assert validate_options("loose", Loose(table={"a": 1})) == Loose(table={"a": 1})
    with pytest.raises(InvalidInputError, match="option 'steps' must be an integer, got 'x'"):
        read_options("loose", Loose, {"steps": "x"})
