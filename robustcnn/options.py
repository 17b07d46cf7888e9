"""Check options, declared once and validated in one place.

A check's ``Config`` is a dataclass whose fields are declared with ``option()`` (type from the
annotation; range or choices, unit and help in the field's metadata) and, for settings shared
with other code, ``group()`` (a dataclass of options whose fields are the check's options under
their own names). Cross-field constraints are named ``Rule`` functions listed in the Config's
``rules``. ``read_options`` turns a plan's ``[checks.<name>]`` table into a Config, through
``validate_options``, the one place values are coerced and checked; a problem is one line of the
form ``check 'adversarial': option 'eps_linf' must be ...``. ``option_rows`` is what
``robustcnn list --options`` prints and docs/checks/*.md's option tables are generated from.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError

_SPEC = "robustcnn.option"
_BOUND = re.compile(r"^\s*(?P<op>>=|>|<=|<)\s*(?P<value>\S+)\s*$")
_INTERVAL = re.compile(r"^\s*(?P<left>[\[(])\s*(?P<low>[^,]+),\s*(?P<high>[^\])]+)(?P<right>[\])])\s*$")


@dataclass(frozen=True)
class Range:
    """An interval of numbers, written as in mathematics: ``"[0, 1)"``, ``">= 1"``, ``"> 0"``."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    @classmethod
    def parse(cls, text: str) -> Range:
        bound = _BOUND.match(text)
        if bound:
            op, value = bound["op"], float(bound["value"])
            if op.startswith(">"):
                return cls(low=value, low_open=op == ">")
            return cls(high=value, high_open=op == "<")
        interval = _INTERVAL.match(text)
        if not interval:
            raise ValueError(f"not a range: {text!r}; write e.g. '[0, 1)', '>= 1' or '> 0'")
        return cls(float(interval["low"]), float(interval["high"]), interval["left"] == "(", interval["right"] == ")")

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if math.isinf(self.low):
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{left}{_number(self.low)}, {_number(self.high)}{right}"


@dataclass(frozen=True)
class OptionSpec:
    """What a field's metadata says about its option; numbers are checked against ``range``, other
    values (list items one by one) against ``choices``."""

    help: str = ""
    range: Range | None = None
    choices: tuple[Any, ...] | None = None
    unit: str = ""
    nonempty: bool = False
    distinct: bool = False
    group: bool = False


@dataclass(frozen=True)
class Rule:
    """A constraint between options, reported against ``option`` when ``holds(config)`` is false.

    ``requirement`` completes "option '<option>' ...": e.g. "must be one of {scores}", where
    ``{scores}`` stands for that option's value in messages and for its name in tables.
    """

    option: str
    requirement: str
    holds: Callable[[Any], bool]

    def message(self, check: str, config: Any) -> str:
        values = options_dict(config)
        text = self.requirement.format(**{k: repr(v) for k, v in values.items()})
        return f"check '{check}': option '{self.option}' {text}, got {values[self.option]!r}"

    def describe(self) -> str:
        return f"`{self.option}` " + re.sub(r"\{(\w+)\}", r"`\1`", self.requirement)


@dataclass(frozen=True)
class Option:
    """One option of a check as a plan names it; ``path`` leads to it through ``group()`` fields."""

    name: str
    type: Any
    default: Any
    spec: OptionSpec
    path: tuple[str, ...]


def option(
    default: Any,
    help: str = "",
    *,
    range: str | None = None,
    choices: Iterable[Any] | None = None,
    unit: str = "",
    nonempty: bool = False,
    distinct: bool = False,
) -> Any:
    """A dataclass field for one option; a list, dict or set default is copied for each instance."""
    spec = OptionSpec(
        help,
        Range.parse(range) if range is not None else None,
        tuple(choices) if choices is not None else None,
        unit,
        nonempty,
        distinct,
    )
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata={_SPEC: spec})
    return dataclasses.field(default=default, metadata={_SPEC: spec})


def group(cls: type, help: str = "") -> Any:
    """A field holding a dataclass of options (shared settings): its fields are options of the
    check under their own names, so a plan sets ``fmn_steps``, not ``attack.fmn_steps``."""
    return dataclasses.field(default_factory=cls, metadata={_SPEC: OptionSpec(help, group=True)})


def options_of(config_type: type) -> list[Option]:
    """The options of a Config dataclass in declaration order, groups flattened in place."""
    options = list(_options(config_type, ()))
    names = [o.name for o in options]
    if len(set(names)) != len(names):
        raise TypeError(f"{config_type.__name__}: an option name occurs twice (a group repeats a field's name)")
    return options


def _options(config_type: type, path: tuple[str, ...]) -> Iterator[Option]:
    hints = _hints(config_type)
    for f in dataclasses.fields(config_type):
        spec = f.metadata.get(_SPEC, OptionSpec())
        if spec.group:
            yield from _options(hints[f.name], (*path, f.name))
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        yield Option(f.name, hints[f.name], default, spec, path)


def _hints(config_type: type) -> dict[str, Any]:
    """Field types; where an annotation cannot be resolved (a Config defined inside a function),
    the type of the field's default stands in, or any type."""
    try:
        return typing.get_type_hints(config_type)
    except NameError:
        defaults = {f.name: f.default for f in dataclasses.fields(config_type)}
        return {k: type(v) if v not in (None, dataclasses.MISSING) else Any for k, v in defaults.items()}


def read_options(check: str, config_type: type, table: dict[str, Any] | None) -> Any:
    """The Config of a plan's ``[checks.<check>]`` table: unknown names refused, then every value
    validated (``validate_options``)."""
    table = dict(table or {})
    known = sorted(o.name for o in options_of(config_type))
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise InvalidInputError(_unknown_message(check, unknown, known))
    return validate_options(check, _build(config_type, table))


def validate_options(check: str, config: Any) -> Any:
    """``config`` with every option coerced to its declared type (a ``--set`` string becomes the
    number it spells) and checked against its range or choices, then the rules; the first problem
    raises one line, ``check '<check>': option '<name>' must be ...``."""
    values = {o.name: _conformed(check, o, _get(config, o)) for o in options_of(type(config))}
    checked = _build(type(config), values)
    for rule in rules_of(type(config)):
        if not rule.holds(checked):
            raise InvalidInputError(rule.message(check, checked))
    return checked


def options_dict(config: Any) -> dict[str, Any]:
    """The options of a Config as a flat table, the inverse of ``read_options``."""
    return {o.name: copy.deepcopy(_get(config, o)) for o in options_of(type(config))}


def _get(config: Any, o: Option) -> Any:
    for step in o.path:
        config = getattr(config, step)
    return getattr(config, o.name)


def _build(config_type: type, values: dict[str, Any]) -> Any:
    """An instance of ``config_type`` from the given values (by option name, groups filled in)."""
    hints = _hints(config_type)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(config_type):
        if f.metadata.get(_SPEC, OptionSpec()).group:
            kwargs[f.name] = _build(hints[f.name], values)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return config_type(**kwargs)


def rules_of(config_type: type) -> tuple[Rule, ...]:
    """The cross-option rules a Config declares (its ``rules`` class attribute)."""
    return tuple(getattr(config_type, "rules", ()))


def _unknown_message(check: str, unknown: list[str], known: list[str]) -> str:
    hints = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
    suggestion = f" (did you mean {', '.join(map(repr, hints))}?)" if hints else ""
    listed = ", ".join(known) or "none"
    return f"check '{check}' has no option {', '.join(map(repr, unknown))}{suggestion}; options: {listed}"


# --- types, ranges and choices ---------------------------------------------------------------


class _Mismatch(ValueError):
    """A value that does not fit the declared type, range or choices."""


def _conformed(check: str, o: Option, value: Any) -> Any:
    if value is None and o.default is None:
        return None  # unset: the check chooses (also where the annotation forgot "| None")
    try:
        return _conform(value, o.type, o.spec)
    except _Mismatch:
        unit = f" ({o.spec.unit})" if o.spec.unit else ""
        raise InvalidInputError(
            f"check '{check}': option '{o.name}' must be {describe(o.type, o.spec)}{unit}, got {value!r}"
        ) from None


def _members(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)


def _is_list(tp: Any) -> bool:
    return tp is list or typing.get_origin(tp) is list


def _item(tp: Any) -> Any:
    args = typing.get_args(tp)
    return args[0] if args else Any


def _conform(value: Any, tp: Any, spec: OptionSpec) -> Any:
    """``value`` as type ``tp`` (a string read from ``--set`` becomes the number or boolean it
    spells), or ``_Mismatch``."""
    members = _members(tp)
    if value is None and type(None) in members:
        return None
    for member in (m for m in members if m is not type(None)):
        try:
            if _is_list(member):
                return _conform_list(value, member, spec)
            return _conform_scalar(value, member, spec)
        except _Mismatch:
            continue
    raise _Mismatch


def _conform_list(value: Any, tp: Any, spec: OptionSpec) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise _Mismatch
    items = [_conform(v, _item(tp), spec) for v in value]
    if spec.nonempty and not items:
        raise _Mismatch
    if spec.distinct and len({repr(v) for v in items}) != len(items):
        raise _Mismatch
    return items


def _conform_scalar(value: Any, tp: Any, spec: OptionSpec) -> Any:
    if tp is Any:
        converted = value
    elif tp is bool:
        converted = _to_bool(value)
    elif tp is int:
        converted = _to_int(value)
    elif tp is float:
        converted = _to_float(value)
    elif _instance(value, typing.get_origin(tp) or tp):
        converted = value  # another declared type (dict, tuple[int, int], a class): taken as it is
    else:
        raise _Mismatch
    if _is_number(converted) and spec.range is not None:
        if converted not in spec.range:
            raise _Mismatch
    elif spec.choices is not None and converted not in spec.choices:
        raise _Mismatch
    return converted


def _instance(value: Any, tp: Any) -> bool:
    return isinstance(tp, type) and isinstance(value, tp) and not isinstance(value, bool)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Mismatch


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise _Mismatch


def _to_float(value: Any) -> float:
    """A finite number; an int stays an int (the value recorded is the value given)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _Mismatch from None
    if not _is_number(value) or not math.isfinite(value):
        raise _Mismatch
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: float) -> str:
    return f"{value:g}"


def describe(tp: Any, spec: OptionSpec) -> str:
    """What a value of type ``tp`` must be, in words: "an integer >= 1", "a non-empty list of ..."."""
    return " or ".join(_describe(m, spec) for m in _members(tp) if m is not type(None))


def _describe(tp: Any, spec: OptionSpec) -> str:
    if _is_list(tp):
        head = "a non-empty list" if spec.nonempty else "a list"
        distinct = "distinct " if spec.distinct else ""
        return f"{head} of {distinct}{_plural(_item(tp), spec)}"
    return " or ".join(_singular(m, spec) for m in _members(tp))


def _singular(tp: Any, spec: OptionSpec) -> str:
    if tp is bool:
        return "true or false"
    if tp in (int, float):
        noun = "an integer" if tp is int else "a number"
        return f"{noun} {_within(spec.range)}" if spec.range is not None else noun
    if spec.choices is not None:
        return "one of " + ", ".join(map(repr, spec.choices))
    return {str: "a string", Any: "a value"}.get(tp, getattr(tp, "__name__", str(tp)))


def _within(bounds: Range) -> str:
    """ "in [0, 1)" for an interval, ">= 1" for a one-sided bound."""
    text = str(bounds)
    return f"in {text}" if text[0] in "[(" else text


def _plural(tp: Any, spec: OptionSpec) -> str:
    words = []
    for m in _members(tp):
        if m in (int, float):
            noun = "integers" if m is int else "numbers"
            words.append(f"{noun} {_within(spec.range)}" if spec.range is not None else noun)
        elif spec.choices is not None:
            words.append("names from " + ", ".join(map(repr, spec.choices)))
        else:
            words.append({str: "strings", bool: "booleans", Any: "values"}.get(m, getattr(m, "__name__", str(m))))
    return " or ".join(words)


# --- tables for `robustcnn list --options` and docs/checks/*.md ------------------------------

COLUMNS = ("option", "type", "default", "range/choices", "unit", "meaning")


def option_rows(config_type: type) -> list[dict[str, str]]:
    """One row per option: name, type, default, range or choices, unit and help, as text."""
    return [
        {
            "option": o.name,
            "type": type_name(o.type),
            "default": toml_value(o.default),
            "range/choices": _bounds(o.spec),
            "unit": o.spec.unit,
            "meaning": o.spec.help,
        }
        for o in options_of(config_type)
    ]


def type_name(tp: Any) -> str:
    """The type as a plan writer reads it: ``int``, ``list[str]``, ``float | str``."""
    if _is_list(tp):
        return f"list[{type_name(_item(tp))}]" if typing.get_args(tp) else "list"
    members = _members(tp)
    if len(members) > 1:
        return " | ".join(type_name(m) for m in members if m is not type(None))
    return "any" if tp is Any else getattr(tp, "__name__", str(tp))


def toml_value(value: Any) -> str:
    """A default as it would be written in a plan; None means the check chooses ("auto")."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def _bounds(spec: OptionSpec) -> str:
    parts = [str(spec.range)] if spec.range is not None else []
    if spec.choices is not None:
        parts.append(", ".join(toml_value(c) for c in spec.choices))
    if spec.nonempty:
        parts.append("non-empty")
    if spec.distinct:
        parts.append("distinct")
    return "; ".join(parts)
