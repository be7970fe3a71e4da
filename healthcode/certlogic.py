"""CertLogic 1.3.3: the EU DCC business-rule language (DESIGN.md, **contract**).

``evaluate(expression, data)`` returns the value the specification defines and ``validate(
expression)`` the list of issues, each ``{"expr": <offending sub-expression>, "message": str}``.
Rules are compiled once (:func:`compile`) into Python source generated from the validated tree
(see "compiling" below) and then evaluated per code.

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

import builtins
import functools
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from .errors import HealthCodeError

__all__ = ["evaluate", "validate", "compile", "compile_cached", "is_valid", "Program", "Batch",
           "DateTime", "CertLogicError", "InvalidExpression", "EvaluationError", "LimitExceeded",
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
# A validated expression is translated to Python source, one statement per operation with a
# temporary per value, and that source is compiled once (rules are compiled at load, and
# :func:`compile_cached` shares programs by content): evaluating a rule is then one call, not a
# call per node. Safety: the source is generated from the *validated* tree only. It holds
# generated names, fixed operator code, and, of the expression's own content, path keys and
# string literals through ``repr`` (a Python literal of exactly that string), small integers
# through ``repr`` of an ``int``, and everything else (floats, large integers, literal sets) as
# objects in the namespace, never as text. Semantics are those of the closures this replaced,
# operation by operation: the same evaluation order, the same errors, and ``reduce`` still
# counts its lambda calls against the one budget ``steps`` of the evaluation.
#
# Python bounds what one function may nest (100 indentation levels, 20 nested loops), so a
# branch that would nest deeper than :data:`_MAX_NESTING` becomes a function of its own;
# ``reduce`` lambdas are functions of their own anyway, as they see their own data.

Closure = Callable[[Any, list], Any]
_MAX_NESTING = 12


class Program:
    """A validated expression, compiled once and evaluated on many data contexts."""

    __slots__ = ("expression", "_run", "source")

    def __init__(self, expression: Any, run: Closure, source: str = ""):
        self.expression = expression
        self._run = run
        self.source = source  # the generated Python, for reading and debugging

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
    generator = _Generator()
    entry = generator.function(expression)
    run, source = _load(generator, entry)
    return Program(expression, run, source)


def _load(generator: "_Generator", entry: str) -> tuple[Callable, str]:
    """The generated source's function ``entry``, and the source."""
    source = "\n".join(generator.functions)
    namespace = dict(_RUNTIME, **generator.constants)
    with warnings.catch_warnings():
        # ``'a' is True`` where an operand is a literal: meant, and answered correctly
        warnings.simplefilter("ignore", SyntaxWarning)
        code = builtins.compile(source, "<certlogic>", "exec")
    exec(code, namespace)  # noqa: S102 (generated from the validated tree, see above)
    return namespace[entry], source


class Batch:
    """Programs evaluated together on one data context, in one call per :data:`BATCH_NODES`.

    A checkpoint judges every rule of its mode on the same ``{"payload", "external"}``, and
    most rules read the same few paths (``payload.v.0``, ``external.validationClock``): a batch
    reads each path that two of its expressions read once, before any of them runs, and then
    evaluates each expression as its :class:`Program` would, with a reduce budget of its own.
    Calling it gives one item per program, in order: the program's value, or the
    :class:`CertLogicError` its evaluation raised, *as* the value (a JSON value or a
    :class:`DateTime` is never an exception). Reading a path has no effect and cannot fail on
    JSON data, so reading it early changes no answer.
    """

    __slots__ = ("programs", "_runs", "source")

    def __init__(self, programs: Sequence[Program]):
        self.programs = tuple(programs)
        runs, sources = [], []
        for chunk in _chunks(self.programs):
            generator = _Generator()
            run, source = _load(generator, generator.batch([p.expression for p in chunk]))
            runs.append(run)
            sources.append(source)
        self._runs = tuple(runs)
        self.source = "\n".join(sources)  # the generated Python, for reading and debugging

    def __call__(self, data: Any) -> list:
        runs = self._runs
        if len(runs) == 1:
            return runs[0](data)
        values = []
        for run in runs:
            values += run(data)
        return values


#: The most JSON values (:func:`_size`) one generated batch function evaluates; more programs
#: make more functions. EU rules hold at most 69 values each: a mode of 30 is one function.
BATCH_NODES = 4000


def _chunks(programs: Sequence[Program]) -> list[list[Program]]:
    chunks: list[list[Program]] = []
    size = BATCH_NODES
    for program in programs:
        nodes = _size(program.expression)
        if size + nodes > BATCH_NODES:
            chunks.append([])
            size = 0
        chunks[-1].append(program)
        size += nodes
    return chunks


def _size(expr: Any) -> int:
    """How many JSON values an (already validated, so bounded) expression holds."""
    count, stack = 0, [expr]
    while stack:
        item = stack.pop()
        count += 1
        if type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item.values())
    return count


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
_SMALL_INT = 10 ** 15


class _Generator:
    """Python source for a validated expression: :meth:`function` gives a function's name."""

    def __init__(self):
        self.functions: list[str] = []
        self.constants: dict[str, Any] = {}
        self.count = 0
        # data paths already read where the code being generated runs, and the temporaries
        # holding them: a path is read once per function and branch (reads have no effects)
        self.known: dict[str, str] = {}

    def name(self, prefix: str = "t") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, value: Any) -> str:
        name = self.name("k_")
        self.constants[name] = value
        return name

    def function(self, expr: Any) -> str:
        """A function ``(data, steps)`` evaluating ``expr``; returns its name."""
        name = self.name("f_")
        lines: list[str] = []
        outer, self.known = self.known, {}  # its own data, or its own locals
        result = self.emit(expr, lines, 1)
        self.known = outer
        lines.append(f"    return {result}")
        self.functions.append(f"def {name}(data, steps):\n" + "\n".join(lines) + "\n")
        return name

    def batch(self, expressions: Sequence[Any]) -> str:
        """A function ``(data)`` giving each expression's value or its error (:class:`Batch`);
        returns its name. Paths that two expressions read are read first, once."""
        name = self.name("f_")
        lines: list[str] = []
        outer, self.known = self.known, {}
        for path in _shared_paths(expressions):
            self.var("var", path, lines, 1)
        shared = self.known
        lines.append("    out = []")
        for expr in expressions:
            self.known = dict(shared)
            lines.append("    try:")
            body: list[str] = []
            body.append(f"        out.append({self.emit(expr, body, 2)})")
            if any("steps" in line for line in body):  # reduce, or a branch of its own
                lines.append(f"        steps = [{MAX_REDUCE_STEPS}]")
            lines += body
            lines.append("    except _CertLogicError as error:")
            lines.append("        out.append(error)")
            lines.append("    except _RecursionError:  # as Program.__call__ says")
            lines.append("        out.append(_LimitExceeded('evaluation nested too deeply'))")
        self.known = outer
        lines.append("    return out")
        self.functions.append(f"def {name}(data):\n" + "\n".join(lines) + "\n")
        return name

    def literal(self, value: Any) -> str:
        kind = type(value)
        if kind is str or kind is bool:
            return repr(value)
        if kind is int and -_SMALL_INT < value < _SMALL_INT:
            return repr(value)
        return self.constant(value)

    def emit(self, expr: Any, lines: list[str], level: int) -> str:
        """Statements computing ``expr`` appended to ``lines`` at ``level``; returns a name or
        literal holding the value (assigned once, never changed after)."""
        kind = type(expr)
        if kind is list:
            items = [self.emit(item, lines, level) for item in expr]
            target = self.name()
            lines.append(f"{'    ' * level}{target} = [{', '.join(items)}]")
            return target
        if kind is not dict:
            return self.literal(expr)
        (operator, values), = expr.items()
        return getattr(self, _EMITTERS[operator])(operator, values, lines, level)

    def branch(self, expr: Any, target: str, lines: list[str], level: int,
               scoped: bool = True) -> None:
        """``target = <expr>`` inside a block at ``level``; a function of its own if deep.
        What a ``scoped`` branch reads is not known after it (it may not have run)."""
        pad = "    " * level
        if level > _MAX_NESTING:
            lines.append(f"{pad}{target} = {self.function(expr)}(data, steps)")
            return
        outer = self.known
        if scoped:
            self.known = dict(outer)
        lines.append(f"{pad}{target} = {self.emit(expr, lines, level)}")
        self.known = outer

    def var(self, operator, path, lines, level):
        if path == "":
            return "data"
        pad = "    " * level
        source = "data"
        prefix = ""
        for fragment in path.split("."):
            prefix += "." + fragment
            known = self.known.get(prefix)
            if known is not None:
                source = known
                continue
            target = self.known[prefix] = self.name()
            key = repr(fragment)
            index = _index(fragment)
            if index is not None and 0 <= index < _SMALL_INT:
                lines.append(f"{pad}{target} = {source}.get({key}) if type({source}) is dict "
                             f"else {source}[{index}] if type({source}) is list and "
                             f"len({source}) > {index} else None if {source} is None "
                             f"else _step({source}, {key}, {index})")
            else:
                index_text = "None" if index is None else self.constant(index)
                lines.append(f"{pad}{target} = {source}.get({key}) if type({source}) is dict "
                             f"else None if {source} is None "
                             f"else _step({source}, {key}, {index_text})")
            source = target
        return source

    def if_(self, operator, values, lines, level):
        pad = "    " * level
        guard = self.emit(values[0], lines, level)
        truth, target = self.name(), self.name()
        lines.append(f"{pad}{truth} = {_truth(guard)}")
        lines.append(f"{pad}if {truth} is True:")
        self.branch(values[1], target, lines, level + 1)
        lines.append(f"{pad}elif {truth} is False:")
        self.branch(values[2], target, lines, level + 1)
        lines.append(f"{pad}else:")
        lines.append(f"{pad}    raise _if_error({guard})")
        return target

    def and_(self, operator, values, lines, level):
        # one pass of a loop, left by ``break`` at the first falsy operand
        pad, inner = "    " * level, "    " * (level + 1)
        target = self.name()
        lines.append(f"{pad}while True:")
        # each operand runs only after those before it: it may use what they read
        outer, self.known = self.known, dict(self.known)
        for value in values:
            self.branch(value, target, lines, level + 1, scoped=False)
            lines.append(f"{inner}if {target} is not True and {_falsy(target)}:")
            lines.append(f"{inner}    break")
        lines.append(f"{inner}break")
        self.known = outer
        return target

    def equals(self, operator, values, lines, level):
        left = self.emit(values[0], lines, level)
        right = self.emit(values[1], lines, level)
        target = self.name()
        lines.append(f"{'    ' * level}{target} = ({left} == {right}) if type({left}) is "
                     f"type({right}) and (type({left}) is str or type({left}) is int) "
                     f"else _strictly_equal({left}, {right})")
        return target

    def in_(self, operator, values, lines, level):
        pad = "    " * level
        needle = self.emit(values[0], lines, level)
        target = self.name()
        literal = values[1]
        if type(literal) is list and literal and all(type(v) is str for v in literal):
            # a literal list of strings (the rules' product and country lists): a set, built
            # once. Only a string can strictly equal a string: set membership is exactly ``in``
            strings = self.constant(frozenset(literal))
            lines.append(f"{pad}{target} = type({needle}) is str and {needle} in {strings}")
            return target
        haystack = self.emit(literal, lines, level)
        lines.append(f"{pad}{target} = ({needle} in {haystack}) if type({needle}) is str and "
                     f"type({haystack}) is list else _in({needle}, {haystack})")
        return target

    def call(self, helper: str, values, lines, level, *extra) -> str:
        """``target = helper(<each value>, *extra)``: operations whose work is a function."""
        operands = [self.emit(v, lines, level) for v in values]
        target = self.name()
        lines.append(f"{'    ' * level}{target} = {helper}({', '.join(operands + list(extra))})")
        return target

    def plus(self, operator, values, lines, level):
        a, b = (self.emit(v, lines, level) for v in values)
        target = self.name()
        lines.append(f"{'    ' * level}{target} = ({a} + {b}) if type({a}) is int and type({b}) "
                     f"is int and -{MAX_SAFE_INTEGER} <= {a} + {b} <= {MAX_SAFE_INTEGER} "
                     f"else _plus({a}, {b})")
        return target

    def comparison(self, operator, values, lines, level):
        """Inline where every operand is of the type compared (integers; date-times, whose
        ``ms`` is compared), else :func:`_compare`, which checks and raises."""
        operands = [self.emit(v, lines, level) for v in values]
        symbol = DATE_COMPARISONS.get(operator, operator)
        target = self.name()
        pad = "    " * level
        generic = f"_compare({operator!r}, {', '.join(operands)})"
        if operator in DATE_COMPARISONS:
            if not all(_is_name(operand) for operand in operands):  # a literal is no date
                lines.append(f"{pad}{target} = {generic}")
                return target
            checks = [f"type({o}) is _DateTime" for o in operands]
            values_ = [f"{o}.ms" for o in operands]
        else:
            # an int literal needs no check; any other literal fails in _compare
            checks = [f"type({o}) is int" for o in operands
                      if _is_name(o) or not o.lstrip("-").isdigit()]
            values_ = operands
        pairs = " and ".join(f"{x} {symbol} {y}" for x, y in zip(values_, values_[1:]))
        condition = " and ".join(checks) or "True"
        lines.append(f"{pad}{target} = ({pairs}) if {condition} else {generic}")
        return target

    def not_(self, operator, values, lines, level):
        operand = self.emit(values[0], lines, level)
        target = self.name()
        lines.append(f"{'    ' * level}{target} = False if {operand} is True else True if "
                     f"{operand} is False else _not({operand})")
        return target

    def plus_time(self, operator, values, lines, level):
        return self.call("_plus_time_of", values[:1], lines, level,
                         self.literal(int(values[1])), repr(values[2]))

    def reduce(self, operator, values, lines, level):
        pad = "    " * level
        items = self.emit(values[0], lines, level)
        lambda_ = self.function(values[1])
        lines.append(f"{pad}if {items} is not None and type({items}) is not list:")
        lines.append(f"{pad}    raise _EvaluationError('operand of reduce evaluated to a non-null "
                     f"non-array')")
        initial = self.emit(values[2], lines, level)
        target = self.name()
        lines.append(f"{pad}{target} = _reduce({items}, {initial}, {lambda_}, steps)")
        return target

    def extract(self, operator, values, lines, level):
        return self.call("_extract", values[:1], lines, level, self.literal(int(values[1])))

    def dob(self, operator, values, lines, level):
        return self.call("_dob", values, lines, level)


_EMITTERS = {"var": "var", "if": "if_", "and": "and_", "===": "equals", "in": "in_",
             "+": "plus", "!": "not_", "plusTime": "plus_time", "reduce": "reduce",
             "extractFromUVCI": "extract", "dccDateOfBirth": "dob",
             **{op: "comparison" for op in (*COMPARISONS, *DATE_COMPARISONS)}}


def _truth(value: str) -> str:
    """Python for :func:`boolsiness` of a generated value, inline for the common kinds."""
    return (f"{value} if {value} is True or {value} is False else False if {value} is None "
            f"else len({value}) != 0 if type({value}) is dict or type({value}) is list or "
            f"type({value}) is str else _boolsiness({value})")


def _falsy(value: str) -> str:
    """Python for :func:`_falsy_operand` of a generated value that is not ``True``, inline for
    the common kinds (an ``and`` stops at a falsy operand; neither truthy nor falsy fails)."""
    return (f"({value} is False or {value} is None or (len({value}) == 0 if type({value}) is "
            f"dict or type({value}) is list or type({value}) is str else {value} == 0 if "
            f"type({value}) is int else _falsy_operand({value})))")


def _is_name(text: str) -> bool:
    """Whether generated text names a value (rather than being a literal)."""
    return text == "data" or text[:1] == "t" or text[:2] == "k_"


def _shared_paths(expressions: Sequence[Any]) -> list[str]:
    """The data paths (and their prefixes) that two or more of ``expressions`` read of the
    data they are evaluated on (not inside a ``reduce`` lambda, which reads its own), shortest
    first, so that each is read from the one before."""
    readers: dict[str, int] = {}
    for expr in expressions:
        paths: set[str] = set()
        stack = [expr]
        while stack:
            item = stack.pop()
            if type(item) is list:
                stack.extend(item)
            elif type(item) is dict:
                (operator, values), = item.items()
                if operator == "var":
                    if values:
                        fragments = values.split(".")
                        paths.update(".".join(fragments[:n])
                                     for n in range(1, len(fragments) + 1))
                elif operator == "reduce":
                    stack.extend((values[0], values[2]))
                else:
                    stack.extend(values)
        for path in paths:
            readers[path] = readers.get(path, 0) + 1
    return sorted((p for p, n in readers.items() if n > 1), key=lambda p: (p.count("."), p))


def _index(fragment: str) -> int | None:
    """A path fragment as an array index; None if it is not one (or too long to be one that
    any array has: the answer on an array is then ``null`` either way)."""
    if len(fragment) <= 18 and re.fullmatch(r"[+-]?\d+", fragment):
        return int(fragment)
    return None


# -- the operations' work, called from generated code ------------------------------------------


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


def _if_error(value) -> EvaluationError:
    return EvaluationError(f"if-guard evaluates to something neither truthy, nor falsy: "
                           f"{_js_str(value)}")


def _falsy_operand(value) -> bool:
    """Whether an ``and`` stops at this operand; an error where it is neither."""
    truth = boolsiness(value)
    if truth is None:
        raise EvaluationError('all operands of an "and" operation must be either truthy or falsy')
    return not truth


def _in(item, items) -> bool:
    if type(items) is not list:
        raise EvaluationError('right-hand side of an "in" operation must be an array')
    if type(item) is str:
        return item in items  # a str equals only a str: Python's == is strict here
    return any(_strictly_equal(item, other) for other in items)


def _plus(a, b) -> int:
    if not (_is_int(a) and _is_int(b)):
        raise EvaluationError("operands of this operation must both be integers")
    total = int(a) + int(b)
    if abs(total) > MAX_SAFE_INTEGER:
        raise EvaluationError("integer out of the range CertLogic can represent")
    return total


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


def _compare(operator: str, *operands) -> bool:
    """A comparison of two or three operands, each checked (in order) after all evaluated."""
    dates = operator in DATE_COMPARISONS
    compare = _COMPARE[DATE_COMPARISONS.get(operator, operator)]
    values = [_comparable(dates, value) for value in operands]
    if len(values) == 2:
        return compare(values[0], values[1])
    return compare(values[0], values[1]) and compare(values[1], values[2])


def _not(value) -> bool:
    truth = boolsiness(value)
    if truth is None:
        raise EvaluationError(f"operand of ! evaluates to something neither truthy, nor "
                              f"falsy: {_js_str(value)}")
    return not truth


def _plus_time_of(text, amount: int, unit: str) -> DateTime:
    if type(text) is not str:
        raise EvaluationError('date argument (#1) of "plusTime" must be a string')
    if len(text) > 64:
        _parse_date_time(text)  # raises: longer than any allowed format
    # a new DateTime per call, as _parse_date_time says; the arithmetic is kept by text
    moment = object.__new__(DateTime)
    moment.ms = _shifted_ms(text, amount, unit)
    return moment


@functools.lru_cache(maxsize=4096)
def _shifted_ms(text: str, amount: int, unit: str) -> int:
    """``plusTime``'s instant for a (short) text, in range (DateTime checked it)."""
    return _plus_time(_parse_date_time(text), amount, unit).ms


def _reduce(items, accumulator, lambda_, steps):
    """``reduce`` once its operand is known to be an array or null and ``initial`` is known."""
    if items is None:
        return accumulator
    if len(items) > steps[0]:
        raise LimitExceeded(f"reduce would run more than {MAX_REDUCE_STEPS} steps")
    steps[0] -= len(items)
    for current in items:
        accumulator = lambda_({"accumulator": accumulator, "current": current}, steps)
    return accumulator


def _extract(uci, index: int):
    if uci is None:
        return None
    if type(uci) is not str:
        raise EvaluationError('"UVCI" argument (#1) of "extractFromUVCI" must be either a '
                              'string or null')
    return _extract_from_uci(uci, index)


def _dob(text):
    if type(text) is not str:
        raise EvaluationError('operand of "dccDateOfBirth" must be a string')
    return _date_of_birth(text)


# what generated code may call, besides its own functions and constants
_RUNTIME = {"__builtins__": {"type": type, "len": len, "dict": dict, "list": list, "str": str,
                             "int": int, "True": True, "False": False, "None": None},
            "_step": _step, "_boolsiness": boolsiness, "_if_error": _if_error,
            "_falsy_operand": _falsy_operand,
            "_EvaluationError": EvaluationError, "_strictly_equal": _strictly_equal,
            "_in": _in, "_plus": _plus, "_compare": _compare, "_DateTime": DateTime,
            "_not": _not, "_plus_time_of": _plus_time_of, "_reduce": _reduce,
            "_extract": _extract, "_dob": _dob, "_CertLogicError": CertLogicError,
            "_LimitExceeded": LimitExceeded, "_RecursionError": RecursionError}


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


#: The form services write a validation clock in (UTC with ``Z``, a fraction or none), one of
#: those ``_DATE_TIME`` reads; :func:`_parse_uncached` reads it by position, without groups,
#: as each scan brings a new one (the others are mostly the same payload dates, kept).
_UTC_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z")


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
    if _UTC_DATE_TIME.fullmatch(text):  # a validation clock's form: read by position
        millis = int((text[20:-1] + "00")[:3]) if len(text) > 20 else 0  # rounded down
        return _instant(int(text[:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                        int(text[14:16]), int(text[17:19]), millis)
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

