"""A destination's filter: an event pattern in the filter rule syntax of AWS Lambda's event
source mappings (``FilterCriteria``), matched against each DynamoDB stream record in its
wire shape (``{"eventName": "MODIFY", "dynamodb": {"NewImage": {"n": {"N": "5"}}}}``).

The syntax and its meaning are Lambda's (those of EventBridge's event patterns):
https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html#filtering-syntax
https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html

A pattern is a JSON object. A key maps to an object, matched against the record's field
of that name, or to a non-empty list of matchers, of which the field's value must match
one; every key of an object must match. Supported:

- literals: a string (equal strings only; ``""`` matches the empty string), a number,
  ``true``/``false`` and ``null`` (``[null]`` matches a JSON null);
- ``{"prefix": "s"}``, ``{"suffix": "s"}``, ``{"equals-ignore-case": "s"}``;
- ``{"anything-but": X}``, X a literal, a non-empty list of literals, or
  ``{"prefix": "s"}``, ``{"suffix": "s"}`` or ``{"equals-ignore-case": "s"}``;
- ``{"numeric": [op, n]}`` with op one of ``=``, ``<``, ``<=``, ``>``, ``>=``, and
  ranges ``{"numeric": [">" or ">=", n, "<" or "<=", m]}``;
- ``{"exists": true}`` and ``{"exists": false}``;
- ``"$or": [pattern, pattern, ...]`` in any object: the object matches when its other
  keys do and at least one of the patterns does.

As in Lambda, matchers apply to leaf values: a field that is absent, holds an object (a
DynamoDB map, or an attribute's ``{"S": ...}`` wrapper), or holds an empty list has no
value, and only ``{"exists": false}`` matches it (test an attribute through its type,
``{"tenant": {"S": [{"exists": true}]}}``). A list (``SS``, ``NS``, ``L``) matches when one
of its elements does; an object pattern over a list of objects matches when one element
matches it whole.

DynamoDB sends numbers as strings (``{"N": "5"}``): here number literals and ``numeric``
also take a numeric string, compared by its decimal value: ``[5]`` matches ``"5"`` and
``"5.0"``, while a string literal ``["5"]`` matches the string ``"5"`` only.

Patterns are checked and compiled once (``FilterPattern.parse``); ``PatternError`` says
where (the dotted path from the root) and what is wrong, in one line.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

#: A compiled object pattern: does this object (a record, or a value in it) match?
_Check = Callable[[Mapping[str, Any]], bool]
#: A compiled test of the value found at a path (absent, an object, a list or a leaf).
_Target = Callable[[Any], bool]
#: A compiled test of one leaf value: a string, number, boolean or null.
_Leaf = Callable[[Any], bool]

_MISSING: Final = object()
_EMPTY: Final[Mapping[str, Any]] = {}
#: What holds fields: a dict first, checked faster than through the Mapping ABC.
_OBJECTS: Final = (dict, Mapping)

_OPERATORS: Final = ("anything-but", "equals-ignore-case", "exists", "numeric", "prefix",
                     "suffix")
_ANYTHING_BUT_OPERATORS: Final = ("equals-ignore-case", "prefix", "suffix")
_COMPARISONS: Final[dict[str, Callable[[Decimal, Decimal], bool]]] = {
    "=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_NUMERIC_FORM: Final = "numeric needs [op, number] or [op, number, op, number]"


class PatternError(ValueError):
    """A filter pattern that is not valid: the message names where (the dotted path from
    the pattern's root) and what is wrong, in one line."""


@dataclass(frozen=True, slots=True)
class FilterPattern:
    """A filter pattern, checked and compiled: ``matches`` tests one stream record."""

    #: The pattern as given.
    source: dict[str, Any]
    _check: _Check = field(init=False, repr=False, compare=False)
    _paths: frozenset[tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, Mapping):
            raise PatternError(f"a pattern is a JSON object, got {_show(self.source)}")
        paths: set[tuple[str, ...]] = {()}
        check, _ = _compile_object(self.source, "", (), paths)
        object.__setattr__(self, "_check", check)
        object.__setattr__(self, "_paths", frozenset(paths))

    @classmethod
    def parse(cls, pattern: str | Mapping[str, Any]) -> FilterPattern:
        """The pattern of a JSON string or of a mapping; ``PatternError`` when it is not
        valid JSON or not a valid pattern."""
        if isinstance(pattern, str):
            try:
                loaded = json.loads(pattern)
            except ValueError as exc:
                raise PatternError(f"not valid JSON: {exc}") from None
            return cls(loaded)
        return cls(pattern if isinstance(pattern, dict) else dict(pattern))

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the record ``event`` (in its wire shape) matches the pattern."""
        return self._check(event)

    def mentions(self, *path: str) -> bool:
        """Whether the pattern refers to ``path`` or to a field under it:
        ``mentions("dynamodb", "OldImage")`` tells whether old images are looked at."""
        return path in self._paths


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _fail(path: str, message: str) -> PatternError:
    return PatternError(f"{path}: {message}" if path else message)


def _compile_object(pattern: Mapping[str, Any], path: str, at: tuple[str, ...],
                    paths: set[tuple[str, ...]]) -> tuple[_Check, bool]:
    """The check of an object pattern, and whether an absent object matches it."""
    if not pattern:
        raise _fail(path, "an object needs at least one field, got {}")
    steps: list[tuple[tuple[bool, int], _Check]] = []
    alternatives: list[_Check] = []
    for key, value in pattern.items():
        if key == "$or":
            alternatives = _compile_or(value, _join(path, key), at, paths)
        else:
            steps.append(_compile_field(key, value, path, at, paths))
    steps.sort(key=lambda step: step[0])
    check = _conjunction(tuple(check for _, check in steps), tuple(alternatives))
    return check, check(_EMPTY)


def _compile_or(value: Any, path: str, at: tuple[str, ...],
                paths: set[tuple[str, ...]]) -> list[_Check]:
    if not isinstance(value, list) or len(value) < 2:
        raise _fail(path, f"needs a list of at least 2 patterns, got {_show(value)}")
    alternatives = []
    for index, alternative in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(alternative, Mapping):
            raise _fail(where, f"a pattern is a JSON object, got {_show(alternative)}")
        alternatives.append(_compile_object(alternative, where, at, paths)[0])
    return alternatives


def _compile_field(key: str, value: Any, path: str, at: tuple[str, ...],
                   paths: set[tuple[str, ...]]) -> tuple[tuple[bool, int], _Check]:
    """The check of one field, with its cost rank (cheaper checks run first: matchers
    before objects, shallow before deep); a chain of objects of one field each
    (``{"dynamodb": {"Keys": {"pk": ...}}}``) is one step."""
    segments: list[str] = []
    while True:
        segments.append(key)
        path, at = _join(path, key), (*at, key)
        paths.add(at)
        if not (isinstance(value, Mapping) and len(value) == 1 and "$or" not in value):
            break
        ((key, value),) = value.items()
    target: _Target
    if isinstance(value, Mapping):
        check, absent = _compile_object(value, path, at, paths)
        target = _object_target(check, absent)
    elif isinstance(value, list) and value:
        target, absent = _compile_matchers(value, path)
    else:
        raise _fail(path, f"a list of matchers is needed, got {_show(value)}")
    rank = (isinstance(value, Mapping), len(segments))
    return rank, _walk(tuple(segments), target, absent)


def _conjunction(steps: tuple[_Check, ...], alternatives: tuple[_Check, ...]) -> _Check:
    if not alternatives and len(steps) == 1:
        return steps[0]
    if not alternatives and len(steps) == 2:
        first, second = steps
        return lambda event: first(event) and second(event)

    def every(event: Mapping[str, Any]) -> bool:
        for step in steps:
            if not step(event):
                return False
        return not alternatives or any(alternative(event) for alternative in alternatives)

    return every


def _walk(segments: tuple[str, ...], target: _Target, absent: bool) -> _Check:
    """The check that finds the value at ``segments`` and tests it with ``target``; a
    list on the way is searched for an object whose value there passes."""
    first, rest = segments[0], segments[1:]
    if not rest:
        return lambda event: target(event.get(first, _MISSING))
    count = len(segments)

    def descend(value: Any, index: int) -> bool:
        if index == count:
            return target(value)
        if isinstance(value, _OBJECTS):
            return descend(value.get(segments[index], _MISSING), index + 1)
        if isinstance(value, list | tuple):
            return _in_objects(value, lambda element: descend(element, index), absent)
        return absent

    def walk(event: Mapping[str, Any]) -> bool:
        value = event.get(first, _MISSING)
        for name in rest:
            if isinstance(value, dict):
                value = value.get(name, _MISSING)
            else:
                return descend(event, 0)
        return target(value)

    return walk


def _object_target(check: _Check, absent: bool) -> _Target:
    def target(value: Any) -> bool:
        if isinstance(value, _OBJECTS):
            return check(value)
        if isinstance(value, list | tuple):
            return _in_objects(value, check, absent)
        return absent

    return target


def _in_objects(values: list[Any] | tuple[Any, ...], check: _Check, absent: bool) -> bool:
    """Whether an object among ``values`` passes ``check`` (``absent`` when none is one)."""
    found = False
    for value in values:
        if isinstance(value, _OBJECTS):
            if check(value):
                return True
            found = True
    return False if found else absent


def _leaves(values: list[Any] | tuple[Any, ...]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list | tuple):
            yield from _leaves(value)
        elif not isinstance(value, _OBJECTS):
            yield value


def _leaf_target(test: _Leaf, absent: bool, strings: frozenset[str] | None) -> _Target:
    """The test of the value at a path by ``test``, a leaf test (equality to ``strings``
    when given)."""
    def target(value: Any) -> bool:
        if isinstance(value, str):
            return value in strings if strings is not None else test(value)
        if value is _MISSING:
            return absent
        if isinstance(value, list | tuple):
            found = False
            for leaf in _leaves(value):
                if test(leaf):
                    return True
                found = True
            return False if found else absent
        if isinstance(value, _OBJECTS):
            return absent
        return test(value)

    return target


def _number(value: Any) -> Decimal | None:
    """``value`` as a finite decimal, when it is a number or a numeric string."""
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except ArithmeticError:
            return None
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int):
        return Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    else:
        return None
    return number if number.is_finite() else None


def _is_literal(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | int | float | Decimal)


def _equality(literals: list[Any], path: str) -> tuple[_Leaf, frozenset[str] | None]:
    """The test of equality to one of ``literals``, and the strings when they are all
    strings (for a set look-up)."""
    strings = frozenset(value for value in literals if isinstance(value, str))
    booleans = frozenset(value for value in literals if isinstance(value, bool))
    null = any(value is None for value in literals)
    numbers = set()
    for value in literals:
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            number = _number(value)
            if number is None:
                raise _fail(path, f"a number literal must be finite, got {_show(value)}")
            numbers.add(number)
    if all(isinstance(value, str) for value in literals):
        return (lambda value: isinstance(value, str) and value in strings), strings

    def equals(value: Any) -> bool:
        if isinstance(value, str):
            if value in strings:
                return True
        elif value is None:
            return null
        elif isinstance(value, bool):
            return value in booleans
        if numbers:
            number = _number(value)
            return number is not None and number in numbers
        return False

    return equals, None


def _compile_matchers(matchers: list[Any], path: str) -> tuple[_Target, bool]:
    """The test of a field's value by a list of matchers, and whether an absent field
    passes it."""
    literals = [matcher for matcher in matchers if _is_literal(matcher)]
    tests: list[_Leaf] = []
    strings: frozenset[str] | None = None
    if literals:
        equals, strings = _equality(literals, path)
        tests.append(equals)
    any_value = absent = False
    for matcher in matchers:
        if _is_literal(matcher):
            continue
        if not isinstance(matcher, Mapping):
            raise _fail(path, "a matcher is a string, number, boolean, null or an object, "
                              f"got {_show(matcher)}")
        if len(matcher) != 1:
            raise _fail(path, f"an operator object has exactly one key, got {_show(matcher)}")
        ((name, argument),) = matcher.items()
        if name == "exists":
            if not isinstance(argument, bool):
                raise _fail(path, f"exists takes true or false, got {_show(argument)}")
            any_value, absent = any_value or argument, absent or not argument
        elif name == "numeric":
            tests.append(_numeric(argument, path))
        elif name == "anything-but":
            tests.append(_anything_but(argument, path))
        elif name in ("prefix", "suffix", "equals-ignore-case"):
            tests.append(_string_test(name, argument, path))
        else:
            raise _fail(path, f"unknown operator {_show(name)} (known: {', '.join(_OPERATORS)})")
    if any_value:
        return _leaf_target(_anything, absent, None), absent
    test = tests[0] if len(tests) == 1 else _any_of(tuple(tests))
    return _leaf_target(test, absent, strings if len(tests) == 1 else None), absent


def _anything(value: Any) -> bool:
    return True


def _any_of(tests: tuple[_Leaf, ...]) -> _Leaf:
    def any_of(value: Any) -> bool:
        for test in tests:
            if test(value):
                break
        else:
            return False
        return True

    return any_of


def _string_test(name: str, argument: Any, path: str, within: str = "") -> _Leaf:
    if not isinstance(argument, str):
        raise _fail(path, f"{within}{name} takes a string, got {_show(argument)}")
    if name == "prefix":
        return lambda value: isinstance(value, str) and value.startswith(argument)
    if name == "suffix":
        return lambda value: isinstance(value, str) and value.endswith(argument)
    folded = argument.casefold()
    return lambda value: isinstance(value, str) and value.casefold() == folded


def _anything_but(argument: Any, path: str) -> _Leaf:
    usage = ("anything-but takes a literal, a non-empty list of literals, or one of "
             f"{{\"prefix\": s}}, {{\"suffix\": s}}, {{\"equals-ignore-case\": s}}, "
             f"got {_show(argument)}")
    if isinstance(argument, Mapping):
        if len(argument) != 1:
            raise _fail(path, usage)
        ((name, value),) = argument.items()
        if name not in _ANYTHING_BUT_OPERATORS:
            raise _fail(path, f"anything-but: unknown operator {_show(name)} "
                              f"(known: {', '.join(_ANYTHING_BUT_OPERATORS)})")
        excluded = _string_test(name, value, path, "anything-but ")
        return lambda leaf: not excluded(leaf)
    values = argument if isinstance(argument, list) else [argument]
    if not values or not all(_is_literal(value) for value in values):
        raise _fail(path, usage)
    equals, _ = _equality(values, path)
    return lambda leaf: not equals(leaf)


def _numeric(argument: Any, path: str) -> _Leaf:
    form = f"{_NUMERIC_FORM}, got {_show(argument)}"
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        raise _fail(path, form)
    comparisons: list[tuple[str, Decimal]] = []
    for index in range(0, len(argument), 2):
        op, bound = argument[index], argument[index + 1]
        if not isinstance(op, str) or op not in _COMPARISONS:
            raise _fail(path, f"{form}: {_show(op)} is not one of {', '.join(_COMPARISONS)}")
        number = (_number(bound) if isinstance(bound, int | float | Decimal)
                  and not isinstance(bound, bool) else None)
        if number is None:
            raise _fail(path, f"{form}: {_show(bound)} is not a finite number")
        comparisons.append((op, number))
    (low_op, low), (high_op, high) = comparisons[0], comparisons[-1]
    if len(comparisons) == 2:
        if low_op not in (">", ">=") or high_op not in ("<", "<="):
            raise _fail(path, f"{form}: a range is > or >= a number, then < or <= a number")
        if low >= high:
            raise _fail(path, f"{form}: the lower bound is not below the upper bound")
    above, below = _COMPARISONS[low_op], _COMPARISONS[high_op]

    def numeric(value: Any) -> bool:
        number = _number(value)
        return number is not None and above(number, low) and below(number, high)

    return numeric
