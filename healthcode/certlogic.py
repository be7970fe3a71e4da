"""CertLogic 1.3.3: the EU DCC business-rule language (DESIGN.md, **contract**).

``evaluate(expression, data)`` returns the value the specification defines and ``validate(
expression)`` the list of issues, each ``{"expr": <offending sub-expression>, "message": str}``.
Rules are compiled once (:func:`compile`) into a tree of closures and then evaluated per code.

The specification (``certlogic/specification.md`` of ehn-dcc-development/eu-dcc-business-rules)
is followed line by line; where it is silent the two reference engines of that repository,
certlogic-js and certlogic-kotlin, decide, and the comments say which:

- the evaluator checks validity *before* evaluating anything (the spec's words; the reference
  engines throw lazily, on the branches they reach), so an invalid rule never half-runs;
- ``===`` and ``in`` compare strings, integers, booleans and ``null`` by value and without
  coercion, anything else by identity, as certlogic-js does (the spec calls ``===`` reliable on
  strings and integers only). Value comparison of arrays would let a hostile rule build
  exponentially large shared structures and compare them;
- there is no ``or`` and no ``!!``: CertLogic's operators are exactly ``var if === and < > <= >=
  in + after before not-after not-before ! plusTime reduce extractFromUVCI dccDateOfBirth``;
  JsonLogic's others are "unrecognised operator" errors, as in both reference validators;
- numbers: a JSON number with an integral value (``42.0``) is an integer, as in JavaScript; a
  fraction is neither truthy nor falsy and fails integer operations (the spec knows integers
  only); ``+`` fails beyond JavaScript's safe-integer range rather than lose precision;
- ``var`` on an array takes integer path fragments only (certlogic-kotlin; JavaScript would
  also answer ``length``), on an object the fragment as a key, on anything else ``null``;
- invalid dates (``2021-02-30``, month 13) are evaluation errors: the spec leaves them
  undefined, and failing is the only answer that cannot pass a code by accident;
- ``reduce``'s lambda sees ``{"accumulator", "current"}`` only; the ``data`` key the spec says
  CertLogic *may* add one day is not there (neither reference engine has it).

Untrusted rules are bounded: an expression may nest at most :data:`MAX_DEPTH` JSON levels and
hold at most :data:`MAX_NODES` values (both reported by ``validate``), and one evaluation runs at
most :data:`MAX_REDUCE_STEPS` ``reduce`` lambda calls in all (:class:`LimitExceeded`), so a rule
file cannot hang a worker, however it nests its reductions.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from .errors import HealthCodeError

__all__ = ["evaluate", "validate", "compile", "compile_cached", "is_valid", "Program", "DateTime",
           "CertLogicError", "InvalidExpression", "EvaluationError", "LimitExceeded",
           "boolsiness", "MAX_DEPTH", "MAX_NODES", "MAX_REDUCE_STEPS"]

#: JSON nesting levels an expression may have (the EU's published rules use at most 16).
MAX_DEPTH = 64
#: JSON values (operators, operands, literals) an expression may hold (EU rules: at most 69).
MAX_NODES = 10_000
#: ``reduce`` lambda calls one evaluation may make, over all its reductions.
MAX_REDUCE_STEPS = 10_000
#: JavaScript's Number.MAX_SAFE_INTEGER: CertLogic's integers are JavaScript numbers.
MAX_SAFE_INTEGER = 2 ** 53 - 1
#: The range of a JavaScript Date, in milliseconds either side of the epoch.
MAX_TIME_MS = 8_640_000_000_000_000

TIME_UNITS = ("year", "month", "day", "hour")
COMPARISONS = ("<", ">", "<=", ">=")
DATE_COMPARISONS = {"after": ">", "before": "<", "not-after": "<=", "not-before": ">="}
INFIX = ("===", "and", *COMPARISONS, "in", "+", *DATE_COMPARISONS)


class CertLogicError(HealthCodeError):
    """A CertLogic expression could not be evaluated."""

    reason = "certlogic_error"
    status = 422


class InvalidExpression(CertLogicError):
    """The expression is not valid CertLogic; ``issues`` lists why (as :func:`validate`)."""

    reason = "invalid_certlogic"

    def __init__(self, issues: list[dict]):
        self.issues = issues
        super().__init__(f"invalid CertLogic expression: {issues[0]['message']}")


class EvaluationError(CertLogicError):
    """Evaluation failed where the specification says it does (e.g. a type mismatch)."""

    reason = "certlogic_evaluation_failed"


class LimitExceeded(EvaluationError):
    """The evaluation would do more work than :data:`MAX_REDUCE_STEPS` allows."""

    reason = "certlogic_limit_exceeded"


# -- values ------------------------------------------------------------------------------------


class DateTime:
    """A CertLogic date-time: milliseconds since the epoch, UTC, as a JavaScript Date holds it.

    Only ``plusTime`` and ``dccDateOfBirth`` make these; the four date comparisons read them.
    """

    __slots__ = ("ms",)

    def __init__(self, ms: int):
        if not -MAX_TIME_MS <= ms <= MAX_TIME_MS:
            raise EvaluationError("date-time out of range")
        self.ms = ms

    def isoformat(self) -> str:
        days, rest = divmod(self.ms, 86_400_000)
        year, month, day = _civil_from_days(days)
        hours, rest = divmod(rest, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        seconds, millis = divmod(rest, 1000)
        return (f"{year:04d}-{month:02d}-{day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}"
                f".{millis:03d}Z")

    def __repr__(self) -> str:
        return f"DateTime({self.isoformat()})"


def _is_int(value: Any) -> bool:
    """An integer as JavaScript sees one: ``42`` and ``42.0``, never ``true``."""
    kind = type(value)
    return kind is int or (kind is float and value.is_integer())


def boolsiness(value: Any) -> bool | None:
    """True for truthy, False for falsy, None for neither (spec, "Truthy and falsy values")."""
    if value is True:
        return True
    if value is False or value is None:
        return False
    kind = type(value)
    if kind is str or kind is list or kind is dict:
        return len(value) > 0
    if kind is int:
        return value != 0
    if kind is float:
        return value != 0 if value.is_integer() else None
    if isinstance(value, Mapping) or (isinstance(value, Sequence)
                                      and not isinstance(value, (str, bytes))):
        return len(value) > 0
    return None


def _strictly_equal(left: Any, right: Any) -> bool:
    """JavaScript's ``===`` on JSON values: primitives by value, without coercion."""
    if left is right:
        return True
    if left is None or right is None:
        return False
    if type(left) is bool or type(right) is bool:
        return False  # two booleans would have been identical
    if type(left) is str:
        return type(right) is str and left == right
    if type(left) in (int, float) and type(right) in (int, float):
        return left == right
    return False


def _js_str(value: Any) -> str:
    """How JavaScript's template strings print a JSON value (the reference messages use it)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, list):
        return ",".join("" if item is None else _js_str(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


# -- validation ----------------------------------------------------------------------------------

_PATH = re.compile(r"^([^.]+?)(\.[^.]+?)*$")


def validate(expression: Any) -> list[dict]:
    """The issues that make ``expression`` invalid CertLogic; an empty list when it is valid.

    Messages and the sub-expression named are those of certlogic-js's validator (the spec's
    validation test suite checks both), plus the bounds of this module.
    """
    budget = [MAX_NODES]
    issues = _validate(expression, 0, budget)
    if budget[0] < 0:
        issues.append({"expr": expression,
                       "message": f"expression has more than {MAX_NODES} values"})
    return issues


def is_valid(expression: Any) -> bool:
    return not validate(expression)


def _validate(expr: Any, depth: int, budget: list[int]) -> list[dict]:
    budget[0] -= 1
    if budget[0] < 0:
        return []  # reported once, on the whole expression
    kind = type(expr)
    if kind is str or kind is bool or kind is int:
        return []
    if kind is float:
        if expr.is_integer():
            return []
        return [{"expr": expr, "message": f"{_js_str(expr)} is a non-integer number"}]
    if depth >= MAX_DEPTH and (kind is list or kind is dict):
        return [{"expr": expr, "message": f"expression nested deeper than {MAX_DEPTH} levels"}]
    if kind is list:
        return [issue for item in expr for issue in _validate(item, depth + 1, budget)]
    if kind is not dict:
        return [{"expr": expr, "message": "invalid CertLogic expression"}]
    if len(expr) != 1:
        return [{"expr": expr, "message": f"expression object must have exactly one key, but "
                                          f"it has {len(expr)}"}]
    (operator, values), = expr.items()
    if operator == "var":
        if type(values) is not str:
            return [{"expr": expr, "message": 'not of the form { "var": "<path>" }'}]
        if values == "" or _PATH.match(values):
            return []
        return [{"expr": expr, "message": f"data access path doesn't have a valid format: "
                                          f"{values}"}]
    if type(values) is not list:
        return [{"expr": expr,
                 "message": 'operation not of the form { "<operator>": [ <values...> ] }'}]
    check = _VALIDATORS.get(operator)
    if check is None:
        return [{"expr": expr, "message": f'unrecognised operator: "{operator}"'}]
    sub = lambda item: _validate(item, depth + 2, budget)  # noqa: E731 (dict + list level)
    return check(expr, operator, values, sub)


def _count(expr, values, n, name, article="an") -> list[dict]:
    if len(values) == n:
        return []
    noun = "value/operand" if n == 1 else "values/operands"
    return [{"expr": expr, "message": f'{article} "{name}"-operation must have exactly {n} '
                                      f'{noun}, but it has {len(values)}'}]


def _validate_if(expr, operator, values, sub):
    issues = _count(expr, values, 3, "if")
    return issues + [i for v in values[:3] for i in sub(v)]


def _validate_infix(expr, operator, values, sub):
    issues = []
    n = len(values)
    if operator == "and":
        limit = n
        if n < 2:
            issues.append({"expr": expr, "message": f'an "and" operation must have at least 2 '
                                                    f'operands, but it has {n}'})
    elif operator in COMPARISONS or operator in DATE_COMPARISONS:
        limit = 3
        if not 2 <= n <= 3:
            issues.append({"expr": expr, "message": f'an operation with operator "{operator}" '
                                                    f'must have 2 or 3 operands, but it has {n}'})
    else:
        limit = 2
        if n != 2:
            issues.append({"expr": expr, "message": f'an operation with operator "{operator}" '
                                                    f'must have 2 operands, but it has {n}'})
    return issues + [i for v in values[:limit] for i in sub(v)]


def _validate_not(expr, operator, values, sub):
    if len(values) == 1:
        return sub(values[0])
    return [{"expr": expr, "message": f"a !-operation (logical not/negation) must have exactly 1 "
                                      f"operand, but it has {len(values)}"}]


def _validate_plus_time(expr, operator, values, sub):
    issues = _count(expr, values, 3, "plusTime", "a")
    if values:
        issues += sub(values[0])
    if len(values) > 1 and not _is_int(values[1]):
        issues.append({"expr": expr, "message": f'"amount" argument (#2) of "plusTime" must be '
                                                f'an integer, but it is: {_js_str(values[1])}'})
    if len(values) > 2 and values[2] not in TIME_UNITS:
        issues.append({"expr": expr, "message": f'"unit" argument (#3) of "plusTime" must be a '
                                                f'string equal to one of '
                                                f'{", ".join(TIME_UNITS)}, but it is: '
                                                f'{_js_str(values[2])}'})
    return issues


def _validate_reduce(expr, operator, values, sub):
    issues = _count(expr, values, 3, "reduce", "a")
    return issues + [i for v in values[:3] for i in sub(v)]


def _validate_extract(expr, operator, values, sub):
    issues = _count(expr, values, 2, "extractFromUVCI")
    if values:
        issues += sub(values[0])
    if len(values) > 1 and not _is_int(values[1]):
        issues.append({"expr": expr, "message": f'"index" argument (#2) of "extractFromUVCI" '
                                                f'must be an integer, but it is: '
                                                f'{_js_str(values[1])}'})
    return issues


def _validate_dob(expr, operator, values, sub):
    issues = _count(expr, values, 1, "dccDateOfBirth", "a")
    if values:
        issues += sub(values[0])
    return issues


_VALIDATORS = {"if": _validate_if, "!": _validate_not, "plusTime": _validate_plus_time,
               "reduce": _validate_reduce, "extractFromUVCI": _validate_extract,
               "dccDateOfBirth": _validate_dob,
               **{op: _validate_infix for op in INFIX}}


# -- compiling -----------------------------------------------------------------------------------
# A program is a closure f(data, steps) -> value; ``steps`` is a one-item list counting down
# the reduce budget of this one evaluation.

Closure = Callable[[Any, list], Any]


class Program:
    """A validated expression, compiled once and evaluated on many data contexts."""

    __slots__ = ("expression", "_run")

    def __init__(self, expression: Any, run: Closure):
        self.expression = expression
        self._run = run

    def __call__(self, data: Any) -> Any:
        """The value of the expression on ``data``; :class:`CertLogicError` where it fails."""
        try:
            return self._run(data, [MAX_REDUCE_STEPS])
        except RecursionError:  # cannot happen within MAX_DEPTH; kept as a last bound
            raise LimitExceeded("evaluation nested too deeply") from None

    evaluate = __call__


def compile(expression: Any) -> Program:  # noqa: A001 (the name the concept has)
    """Validate and compile; :class:`InvalidExpression` lists the issues of an invalid one."""
    issues = validate(expression)
    if issues:
        raise InvalidExpression(issues)
    return Program(expression, _build(expression))


def evaluate(expression: Any, data: Any) -> Any:
    """The value CertLogic defines for ``expression`` on ``data`` (DESIGN.md contract).

    Raises :class:`InvalidExpression` for an invalid expression (before evaluating anything),
    :class:`EvaluationError` where the specification says evaluation fails.

    Programs are cached by the expression's content, as :mod:`re` caches patterns: callers
    that evaluate the same rule on many codes pay for validation and compilation once, and a
    caller that changes an expression in place gets the new one. The key is the ``repr`` (which
    tells ``1``, ``1.0`` and ``True`` apart), and a hit must also be equal to the expression.
    """
    return compile_cached(expression)(data)


def compile_cached(expression: Any) -> Program:
    """:func:`compile`, shared: equal expressions get the same :class:`Program` object."""
    try:
        key = repr(expression)
    except RecursionError:  # nested past any limit: validation reports it
        return compile(expression)
    program = _CACHE.get(key)
    if program is None or program.expression != expression:
        program = compile(expression)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()  # cheap and thread-safe; rules in use are back after one call
        _CACHE[key] = program
    return program


_CACHE: dict[str, Program] = {}
_CACHE_SIZE = 512


def _build(expr: Any) -> Closure:
    kind = type(expr)
    if kind is list:
        items = [_build(item) for item in expr]
        return lambda data, steps: [item(data, steps) for item in items]
    if kind is not dict:
        return lambda data, steps: expr
    (operator, values), = expr.items()
    return _BUILDERS[operator](operator, values)


def _build_var(operator, path):
    if path == "":
        return lambda data, steps: data
    fragments = []
    for fragment in path.split("."):
        index = int(fragment) if re.fullmatch(r"[+-]?\d+", fragment) else None
        fragments.append((fragment, index))
    if len(fragments) == 1:
        (key, index), = fragments

        def var1(data, steps):
            kind = type(data)
            if kind is dict:
                return data.get(key)
            return _step(data, key, index)

        return var1

    # paths of three and four fragments (payload.v.0, payload.v.0.mp) unrolled: most of them
        (k0, i0), (k1, i1), (k2, i2) = fragments

        def var3(data, steps):
            data = data.get(k0) if type(data) is dict else _step(data, k0, i0)
            if data is None:
                return None
            data = data.get(k1) if type(data) is dict else _step(data, k1, i1)
            if data is None:
                return None
            return data.get(k2) if type(data) is dict else _step(data, k2, i2)

        return var3
    if len(fragments) == 4:  # payload.v.0.mp: the most common path in the EU's rules
        (k0, i0), (k1, i1), (k2, i2), (k3, i3) = fragments

        def var4(data, steps):
            data = data.get(k0) if type(data) is dict else _step(data, k0, i0)
            if data is None:
                return None
            data = data.get(k1) if type(data) is dict else _step(data, k1, i1)
            if data is None:
                return None
            data = data.get(k2) if type(data) is dict else _step(data, k2, i2)
            if data is None:
                return None
            return data.get(k3) if type(data) is dict else _step(data, k3, i3)

        return var4

    def var(data, steps):
        for key, index in fragments:
            if type(data) is dict:
                data = data.get(key)
            else:
                data = _step(data, key, index)
            if data is None:
                return None
        return data

    return var


def _step(data, key, index):
    """One path fragment into a value that is not a plain dict."""
    if type(data) is list:
        return data[index] if index is not None and 0 <= index < len(data) else None
    if (isinstance(data, Sequence) and not isinstance(data, (str, bytes))):
        if index is not None and 0 <= index < len(data):
            return data[index]
        return None
    if isinstance(data, Mapping):
        return data.get(key)
    return None


def _build_if(operator, values):
    guard, then, else_ = (_build(v) for v in values)

    def if_(data, steps):
        value = guard(data, steps)
        truth = value if value is True or value is False else boolsiness(value)
        if truth is True:
            return then(data, steps)
        if truth is False:
            return else_(data, steps)
        raise EvaluationError(f"if-guard evaluates to something neither truthy, nor falsy: "
                              f"{_js_str(value)}")

    return if_


def _build_and(operator, values):
    operands = [_build(v) for v in values]

    def and_(data, steps):
        value = True
        for operand in operands:
            value = operand(data, steps)
            truth = boolsiness(value)
            if truth is None:
                raise EvaluationError('all operands of an "and" operation must be either truthy '
                                      'or falsy')
            if truth is False:
                return value
        return value

    return and_


def _build_equals(operator, values):
    left, right = (_build(v) for v in values)
    return lambda data, steps: _strictly_equal(left(data, steps), right(data, steps))


def _build_in(operator, values):
    needle = _build(values[0])
    literal = values[1]
    if type(literal) is list and literal and all(type(v) is str for v in literal):
        # a literal list of strings (the rules' product and country lists): a set, built once.
        # Only a string can strictly equal a string, so set membership is exactly ``in``.
        strings = frozenset(literal)

        def in_literal(data, steps):
            item = needle(data, steps)
            return type(item) is str and item in strings

        return in_literal
    haystack = _build(literal)

    def in_(data, steps):
        item = needle(data, steps)
        items = haystack(data, steps)
        if type(items) is not list:
            raise EvaluationError('right-hand side of an "in" operation must be an array')
        if type(item) is str:
            return item in items  # a str equals only a str: Python's == is strict here
        return any(_strictly_equal(item, other) for other in items)

    return in_


def _build_plus(operator, values):
    left, right = (_build(v) for v in values)

    def plus(data, steps):
        a = left(data, steps)
        b = right(data, steps)
        if not (_is_int(a) and _is_int(b)):
            raise EvaluationError("operands of this operation must both be integers")
        total = int(a) + int(b)
        if abs(total) > MAX_SAFE_INTEGER:
            raise EvaluationError("integer out of the range CertLogic can represent")
        return total

    return plus


_COMPARE = {"<": lambda a, b: a < b, ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


def _comparable(dates: bool, value):
    """An operand as the comparison compares it: milliseconds of a date, or an integer."""
    if dates:
        if type(value) is DateTime:
            return value.ms
        raise EvaluationError("all operands of a date-time comparison must be date-times")
    if type(value) is int or _is_int(value):
        return value
    raise EvaluationError("all operands of a comparison operation must be of integer type")


def _build_comparison(operator, values):
    operands = [_build(v) for v in values]
    dates = operator in DATE_COMPARISONS
    compare = _COMPARE[DATE_COMPARISONS.get(operator, operator)]
    if len(operands) == 2:
        first, second = operands

        def binary(data, steps):
            a, b = first(data, steps), second(data, steps)  # both evaluated, then checked
            return compare(_comparable(dates, a), _comparable(dates, b))

        return binary
    first, second, third = operands

    def ternary(data, steps):
        a, b, c = first(data, steps), second(data, steps), third(data, steps)
        a, b, c = _comparable(dates, a), _comparable(dates, b), _comparable(dates, c)
        return compare(a, b) and compare(b, c)

    return ternary


def _build_not(operator, values):
    operand = _build(values[0])

    def not_(data, steps):
        value = operand(data, steps)
        truth = boolsiness(value)
        if truth is None:
            raise EvaluationError(f"operand of ! evaluates to something neither truthy, nor "
                                  f"falsy: {_js_str(value)}")
        return not truth

    return not_


def _build_plus_time(operator, values):
    operand = _build(values[0])
    amount = int(values[1])
    unit = values[2]

    def plus_time(data, steps):
        text = operand(data, steps)
        if type(text) is not str:
            raise EvaluationError('date argument (#1) of "plusTime" must be a string')
        return _plus_time(_parse_date_time(text), amount, unit)

    return plus_time


def _build_reduce(operator, values):
    operand, lambda_, initial = (_build(v) for v in values)

    def reduce(data, steps):
        items = operand(data, steps)
        if items is None:
            return initial(data, steps)
        if type(items) is not list:
            raise EvaluationError("operand of reduce evaluated to a non-null non-array")
        accumulator = initial(data, steps)
        if len(items) > steps[0]:
            raise LimitExceeded(f"reduce would run more than {MAX_REDUCE_STEPS} steps")
        steps[0] -= len(items)
        for current in items:
            accumulator = lambda_({"accumulator": accumulator, "current": current}, steps)
        return accumulator

    return reduce


def _build_extract(operator, values):
    operand = _build(values[0])
    index = int(values[1])

    def extract(data, steps):
        uci = operand(data, steps)
        if uci is None:
            return None
        if type(uci) is not str:
            raise EvaluationError('"UVCI" argument (#1) of "extractFromUVCI" must be either a '
                                  'string or null')
        return _extract_from_uci(uci, index)

    return extract


def _build_dob(operator, values):
    operand = _build(values[0])

    def dob(data, steps):
        text = operand(data, steps)
        if type(text) is not str:
            raise EvaluationError('operand of "dccDateOfBirth" must be a string')
        return _date_of_birth(text)

    return dob


_BUILDERS = {"var": _build_var, "if": _build_if, "and": _build_and, "===": _build_equals,
             "in": _build_in, "+": _build_plus, "!": _build_not, "plusTime": _build_plus_time,
             "reduce": _build_reduce, "extractFromUVCI": _build_extract,
             "dccDateOfBirth": _build_dob,
             **{op: _build_comparison for op in (*COMPARISONS, *DATE_COMPARISONS)}}


# -- dates ---------------------------------------------------------------------------------------
# Civil-date arithmetic on day numbers (H. Hinnant's algorithms), so every date a JavaScript
# Date can hold works, not only Python's years 1-9999.


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
# certlogic-js's pattern for the spec's list of allowed formats
_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+?)?"
                        r"(Z|(([+-])(\d{1,2}):?(\d{2})?))?$")


def _instant(year, month, day, hour=0, minute=0, second=0, millis=0, offset_minutes=0) -> DateTime:
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        raise EvaluationError(f"not a calendar date: {year:04d}-{month:02d}-{day:02d}")
    if hour == 24 and minute == second == millis == 0:
        pass  # ISO 8601's end of day, which JavaScript's Date accepts as the next midnight
    elif not (hour <= 23 and minute <= 59 and second <= 59):
        raise EvaluationError(f"not a time of day: {hour:02d}:{minute:02d}:{second:02d}")
    days = _days_from_civil(year, month, day)
    ms = (((days * 24 + hour) * 60 + minute - offset_minutes) * 60 + second) * 1000 + millis
    return DateTime(ms)


def _parse_date_time(text: str) -> DateTime:
    """A date or date-time string as ``plusTime`` reads it (partial dates rounded up).

    Parsed instants are cached by text (rules re-read ``external.validationClock`` and the same
    payload dates over and over); each call still returns a new DateTime, as JavaScript's Date
    is a new object per ``plusTime`` (``===`` on two of them is false).
    """
    if len(text) > 64:  # longer than any allowed format: not worth a cache slot
        raise EvaluationError(f"not an allowed date or date-time format: {text[:64]}...")
    return DateTime(_parsed_ms(text))


@functools.lru_cache(maxsize=4096)
def _parsed_ms(text: str) -> int:
    return _parse_uncached(text).ms


def _parse_uncached(text: str) -> DateTime:
    date = _parse_date(text)
    if date is not None:
        return date
    match = _DATE_TIME.match(text)
    if not match:
        raise EvaluationError(f"not an allowed date or date-time format: {text}")
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7)
    millis = int((fraction[1:] + "00")[:3]) if fraction else 0  # rounded down to the ms
    offset = 0
    if match.group(8) and match.group(8) != "Z":
        hours, minutes = int(match.group(11)), int(match.group(12) or 0)
        if hours > 23 or minutes > 59:
            raise EvaluationError(f"not a timezone offset: {match.group(8)}")
        offset = (hours * 60 + minutes) * (-1 if match.group(10) == "-" else 1)
    return _instant(year, month, day, hour, minute, second, millis, offset)


def _round_up_partial(text: str) -> DateTime | None:
    """``YYYY`` and ``YYYY-MM`` as the last day they can mean, at midnight UTC."""
    if len(text) == 4 and text.isdigit() and text.isascii():
        return _instant(int(text), 12, 31)
    if len(text) == 7 and text[4] == "-" and text[:4].isdigit() and text[5:].isdigit() \
            and text.isascii():
        year, month = int(text[:4]), int(text[5:])
        if not 1 <= month <= 12:
            raise EvaluationError(f"not a calendar month: {text}")
        return _instant(year, month, _days_in_month(year, month))
    return None


def _parse_date(text: str) -> DateTime | None:
    """``YYYY``, ``YYYY-MM`` (rounded up) or ``YYYY-MM-DD`` at midnight UTC; None otherwise.
    Where ``plusTime`` and ``dccDateOfBirth`` read alike (spec 1.3.2)."""
    partial = _round_up_partial(text)
    if partial is not None:
        return partial
    match = _DATE.match(text)
    return _instant(*map(int, match.groups())) if match else None


def _date_of_birth(text: str) -> DateTime:
    date = _parse_date(text)
    if date is None:
        raise EvaluationError(f'can\'t parse "{text}" as an EU DCC date-of-birth')
    return date


def _plus_time(moment: DateTime, amount: int, unit: str) -> DateTime:
    """JavaScript's ``setUTC<unit>(getUTC<unit>() + amount)``: no DST, day overflow rolls on."""
    if amount == 0:
        return moment
    if unit == "hour":
        return DateTime(moment.ms + amount * 3_600_000)
    if unit == "day":
        return DateTime(moment.ms + amount * 86_400_000)
    if abs(amount) > 300_000 * 12:
        raise EvaluationError("date-time out of range")
    days, time_of_day = divmod(moment.ms, 86_400_000)
    year, month, day = _civil_from_days(days)
    if unit == "month":
        year, month0 = divmod(year * 12 + month - 1 + amount, 12)
        month = month0 + 1
    else:
        year += amount
    # the day of month is kept and overflows into the next month (2020-02-29 + 1 year: 03-01)
    new_days = _days_from_civil(year, month, 1) + day - 1
    return DateTime(new_days * 86_400_000 + time_of_day)


def _extract_from_uci(uci: str, index: int) -> str | None:
    if index < 0:
        return None
    if uci.startswith("URN:UVCI:"):
        uci = uci[len("URN:UVCI:"):]
    fragments = re.split(r"[/#:]", uci)
    return fragments[index] if index < len(fragments) else None

