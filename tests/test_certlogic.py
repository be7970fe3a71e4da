"""CertLogic beyond the official suites: the spec's fine print, and hostile rules kept bounded."""
from __future__ import annotations

import pytest

from healthcode import certlogic
from healthcode.certlogic import EvaluationError, InvalidExpression, LimitExceeded
from healthcode.errors import HealthCodeError


def iso(expression, data=None) -> str:
    return certlogic.evaluate(expression, data).isoformat()


# -- errors belong to the service's tree ----------------------------------------------------------


def test_errors_are_health_code_errors_with_stable_reasons():
    assert issubclass(certlogic.CertLogicError, HealthCodeError)
    with pytest.raises(InvalidExpression) as invalid:
        certlogic.evaluate({"or": [True, False]}, {})
    assert invalid.value.reason == "invalid_certlogic"
    assert invalid.value.issues == [{"expr": {"or": [True, False]},
                                     "message": 'unrecognised operator: "or"'}]
    with pytest.raises(EvaluationError) as failed:
        certlogic.evaluate({"+": [1, "2"]}, {})
    assert failed.value.reason == "certlogic_evaluation_failed"


# -- plusTime and dates, by the spec's own examples -----------------------------------------------


@pytest.mark.parametrize("date, amount, unit, expected", [
    ("2020-02-29", 1, "day", "2020-03-01T00:00:00.000Z"),
    ("2020-02-29", 1, "month", "2020-03-29T00:00:00.000Z"),
    ("2020-02-29", 1, "year", "2021-03-01T00:00:00.000Z"),
    ("2021-01-31", 1, "month", "2021-03-03T00:00:00.000Z"),   # JS setUTCMonth rolls over
    ("2021-03-31", -1, "month", "2021-03-03T00:00:00.000Z"),
    ("2021-12-15", 1, "month", "2022-01-15T00:00:00.000Z"),
    ("2021-01-15", -13, "month", "2019-12-15T00:00:00.000Z"),
    ("2021-03-27T12:00:00+01:00", 24, "hour", "2021-03-28T11:00:00.000Z"),  # no DST
    ("2021", 0, "day", "2021-12-31T00:00:00.000Z"),          # partial dates rounded up
    ("2021-02", 0, "day", "2021-02-28T00:00:00.000Z"),
    ("2020-02", 0, "day", "2020-02-29T00:00:00.000Z"),
])
def test_plus_time(date, amount, unit, expected):
    assert iso({"plusTime": [date, amount, unit]}) == expected


@pytest.mark.parametrize("text, expected", [
    ("2021-06-01T10:20:30", "2021-06-01T10:20:30.000Z"),
    ("2021-06-01T10:20:30Z", "2021-06-01T10:20:30.000Z"),
    ("2021-06-01T10:20:30+2", "2021-06-01T08:20:30.000Z"),
    ("2021-06-01T10:20:30+02", "2021-06-01T08:20:30.000Z"),
    ("2021-06-01T10:20:30+130", "2021-06-01T08:50:30.000Z"),
    ("2021-06-01T10:20:30-0130", "2021-06-01T11:50:30.000Z"),
    ("2021-06-01T10:20:30+1:30", "2021-06-01T08:50:30.000Z"),
    ("2021-06-01T10:20:30+01:30", "2021-06-01T08:50:30.000Z"),
    ("2021-06-01T10:20:30.5", "2021-06-01T10:20:30.500Z"),
    ("2021-06-01T10:20:30.123987Z", "2021-06-01T10:20:30.123Z"),  # rounded down to the ms
    ("2021-06-01T10:20:30.1+02:00", "2021-06-01T08:20:30.100Z"),
    ("2021-06-01T10:20:30.1Z", "2021-06-01T10:20:30.100Z"),          # a clock's forms
    ("2021-06-01T10:20:30.98765432101Z", "2021-06-01T10:20:30.987Z"),
    ("2021-06-01T24:00:00Z", "2021-06-02T00:00:00.000Z"),
    ("2021-06-01T24:00:00.000Z", "2021-06-02T00:00:00.000Z"),
    ("0000-03-01T00:00:00Z", "0000-03-01T00:00:00.000Z"),
])
def test_date_time_formats_of_the_spec(text, expected):
    assert iso({"plusTime": [text, 0, "hour"]}) == expected


@pytest.mark.parametrize("text", ["2021-02-30", "2022-13", "2021-06-01 10:20:30",
                                  "2021-06-01T25:00:00Z", "yesterday", "",
                                  "2021-02-29T00:00:00Z", "2021-06-01T24:00:01Z",
                                  "2021-06-01T10:60:00.5Z", "2021-06-01T10:20:30.Z"])
def test_invalid_dates_fail_evaluation(text):
    with pytest.raises(EvaluationError):
        certlogic.evaluate({"plusTime": [text, 0, "day"]}, None)


@pytest.mark.parametrize("dob, expected", [
    ("1963", "1963-12-31T00:00:00.000Z"), ("1963-02", "1963-02-28T00:00:00.000Z"),
    ("1964-02", "1964-02-29T00:00:00.000Z"), ("1963-04-05", "1963-04-05T00:00:00.000Z")])
def test_dcc_date_of_birth_is_the_last_consistent_day(dob, expected):
    assert iso({"dccDateOfBirth": [{"var": ""}]}, dob) == expected


def test_dcc_date_of_birth_refuses_date_times():
    with pytest.raises(EvaluationError):
        certlogic.evaluate({"dccDateOfBirth": ["1963-04-05T00:00:00Z"]}, None)


def test_dates_compare_only_with_dates():
    date = {"plusTime": ["2021-01-01", 0, "day"]}
    assert certlogic.evaluate({"before": [date, {"plusTime": ["2021-01-02", 0, "day"]}]}, None)
    with pytest.raises(EvaluationError):
        certlogic.evaluate({"before": [date, "2021-01-02"]}, None)
    with pytest.raises(EvaluationError):
        certlogic.evaluate({"<": [date, 3]}, None)


# -- values: no coercion --------------------------------------------------------------------------


@pytest.mark.parametrize("expression, expected", [
    ({"===": [True, 1]}, False), ({"===": [1, 1.0]}, True), ({"===": ["1", 1]}, False),
    ({"in": [1, [True]]}, False), ({"in": [True, [1]]}, False), ({"in": ["a", ["a"]]}, True),
    ({"===": [{"plusTime": ["2021", 0, "day"]}, {"plusTime": ["2021", 0, "day"]}]}, False),
])
def test_strict_equality(expression, expected):
    assert certlogic.evaluate(expression, None) is expected


@pytest.mark.parametrize("value", [{"var": "fraction"}, {"plusTime": ["2021", 0, "day"]}])
def test_neither_truthy_nor_falsy_fails(value):
    for expression in ({"!": [value]}, {"if": [value, 1, 2]}, {"and": [True, value]}):
        with pytest.raises(EvaluationError):
            certlogic.evaluate(expression, {"fraction": 0.5})


def test_integers_stay_in_javascripts_safe_range():
    assert certlogic.evaluate({"+": [2 ** 52, 2 ** 52 - 1]}, None) == 2 ** 53 - 1
    with pytest.raises(EvaluationError):
        certlogic.evaluate({"+": [2 ** 53, 1]}, None)


def test_var_reads_arrays_by_index_only():
    data = {"a": [1, 2], "s": "text", "o": {"1": "one"}}
    assert certlogic.evaluate({"var": "a.length"}, data) is None
    assert certlogic.evaluate({"var": "s.0"}, data) is None
    assert certlogic.evaluate({"var": "a.-1"}, data) is None
    assert certlogic.evaluate({"var": "o.1"}, data) == "one"


def test_validity_is_checked_before_anything_is_evaluated():
    """The spec: the evaluator checks validity first, so a bad else-branch fails at once."""
    with pytest.raises(InvalidExpression):
        certlogic.evaluate({"if": [True, 1, {"all": [1]}]}, None)
    with pytest.raises(InvalidExpression):
        certlogic.evaluate({"if": [True, 1, 2, 3]}, None)


def test_compiled_programs_evaluate_many_times():
    program = certlogic.compile({"in": [{"var": "x"}, ["a", "b"]]})
    assert [program({"x": x}) for x in ("a", "c", None)] == [True, False, False]


# -- hostile rules ---------------------------------------------------------------------------------


def nested_not(depth: int):
    expression = True
    for _ in range(depth):
        expression = {"!": [expression]}
    return expression


def test_deep_nesting_is_refused_by_validate():
    assert certlogic.validate(nested_not(20)) == []
    issues = certlogic.validate(nested_not(100_000))
    assert len(issues) == 1
    assert issues[0]["message"] == f"expression nested deeper than {certlogic.MAX_DEPTH} levels"
    with pytest.raises(InvalidExpression):
        certlogic.evaluate(nested_not(100_000), None)


def test_huge_expressions_are_refused_by_validate():
    issues = certlogic.validate({"in": ["x", ["y"] * (certlogic.MAX_NODES + 1)]})
    assert issues[-1]["message"] == f"expression has more than {certlogic.MAX_NODES} values"


@pytest.mark.parametrize("operator", ["or", "!!", "all", "some", "map", "filter", "missing",
                                      "==", "log", "method", "cat", "substr"])
def test_operators_outside_certlogic_are_refused(operator):
    issues = certlogic.validate({"and": [True, {operator: [True]}]})
    assert issues == [{"expr": {operator: [True]}, "message": f'unrecognised operator: '
                                                             f'"{operator}"'}]


def test_nested_reductions_are_bounded():
    """reduce inside reduce inside reduce over 1,000 items would be 10^9 lambda calls."""
    inner = {"reduce": [{"var": "current"}, {"+": [{"var": "accumulator"}, 1]}, 0]}
    middle = {"reduce": [{"var": "current"}, inner, 0]}
    expression = {"reduce": [{"var": "xs"}, middle, 0]}
    assert certlogic.validate(expression) == []
    row = [[0] * 1000] * 1000
    with pytest.raises(LimitExceeded):
        certlogic.evaluate(expression, {"xs": [row] * 1000})


def test_a_huge_reduce_is_bounded():
    expression = {"reduce": [{"var": "xs"}, {"+": [{"var": "accumulator"}, 1]}, 0]}
    assert certlogic.evaluate(expression, {"xs": [0] * 100}) == 100
    with pytest.raises(LimitExceeded):
        certlogic.evaluate(expression, {"xs": [0] * (certlogic.MAX_REDUCE_STEPS + 1)})


def test_self_doubling_accumulators_compare_in_constant_time():
    """[acc, acc] doubles a value's size per step; === compares such values by identity."""
    double = {"reduce": [{"var": "xs"}, [{"var": "accumulator"}, {"var": "accumulator"}], 0]}
    expression = {"===": [double, double]}
    assert certlogic.evaluate(expression, {"xs": [0] * 2000}) is False


# -- compiled to Python: the generated code is data-driven, bounded, and the same language ------


HOSTILE_KEY = "x')\nraise SystemExit('escaped'); ('"


def test_keys_and_strings_of_a_rule_are_data_never_code():
    expression = {"if": [{"var": HOSTILE_KEY}, HOSTILE_KEY, {"===": [{"var": "y"}, "\\'\"\n"]}]}
    program = certlogic.compile(expression)
    assert program({HOSTILE_KEY: 1}) == HOSTILE_KEY
    assert program({"y": "\\'\"\n"}) is True
    assert "SystemExit" not in program.source.replace(repr(HOSTILE_KEY), "")


def nested_in_branches(depth: int):
    expression = {"var": "leaf"}
    for _ in range(depth):
        expression = {"if": [{"var": "go"}, {"and": [True, expression]}, False]}
    return expression


def test_branches_nested_as_deep_as_validation_allows_evaluate():
    """Deeper than one Python function may nest its blocks: deep branches become functions."""
    depth = certlogic.MAX_DEPTH // 4 - 1
    expression = nested_in_branches(depth)
    assert certlogic.validate(expression) == []
    assert certlogic.evaluate(expression, {"go": True, "leaf": "deep"}) == "deep"
    assert certlogic.evaluate(expression, {"go": 0, "leaf": "deep"}) is False


def test_the_widest_expressions_compile_and_keep_their_semantics():
    operands = certlogic.MAX_NODES // 3
    wide_and = {"and": [{"var": "x"}] * operands + [{"var": "y"}]}
    assert certlogic.evaluate(wide_and, {"x": 1, "y": "last"}) == "last"
    assert certlogic.evaluate(wide_and, {"x": [], "y": "last"}) == []
    with pytest.raises(EvaluationError):
        certlogic.evaluate(wide_and, {"x": 1.5})


def test_a_path_read_in_one_branch_is_read_again_in_the_other():
    """Paths are read once per branch; what a branch not taken would have read is not reused."""
    expression = {"if": [{"var": "c"}, {"var": "a.b"}, {"if": [{"var": "a"}, {"var": "a.b"},
                                                              "none"]}]}
    assert certlogic.evaluate(expression, {"c": False, "a": {"b": 2}}) == 2
    assert certlogic.evaluate(expression, {"c": True, "a": {"b": 3}}) == 3
    assert certlogic.evaluate(expression, {"c": False}) == "none"


def test_each_plus_time_is_a_new_date_time():
    """=== compares date-times by identity (certlogic-js), however plusTime is computed."""
    shifted = {"plusTime": [{"var": "d"}, 1, "day"]}
    assert certlogic.evaluate({"===": [shifted, shifted]}, {"d": "2021-01-01"}) is False
    assert certlogic.evaluate({"not-after": [shifted, shifted, shifted]}, {"d": "2021-01-01"})


# -- batches: several programs on one data context, each answering as it would alone ----------


def alone(program, data):
    """What one program gives on its own: its value, or the error it raises."""
    try:
        return program(data)
    except certlogic.CertLogicError as error:
        return error


def agree(batched, single) -> bool:
    if isinstance(single, certlogic.CertLogicError):
        return type(batched) is type(single) and batched.message == single.message
    if isinstance(single, certlogic.DateTime):
        return type(batched) is certlogic.DateTime and batched.ms == single.ms
    return type(batched) is type(single) and batched == single


BATCHED = [{"var": "payload.v.0.dn"},
           {"if": [{"var": "payload.v.0"}, {">=": [{"var": "payload.v.0.dn"}, 2]}, True]},
           {"after": [{"var": "payload.v.0.dn"}, 1]},              # fails: not a date-time
           {"reduce": [{"var": "payload.v"}, {"+": [{"var": "accumulator"}, 1]}, 0]},
           {"plusTime": [{"var": "external.clock"}, 1, "day"]},
           {"in": [{"var": "payload.v.0.mp"}, {"var": "external.sets.products"}]},
           {"var": "payload.v.1.dn"}]


@pytest.mark.parametrize("data", [
    {"payload": {"v": [{"dn": 2, "mp": "EU/1"}]}, "external": {"clock": "2024-06-01",
                                                                 "sets": {"products": ["EU/1"]}}},
    {"payload": {"v": [{"dn": 1}, {"dn": 2}]}, "external": {"clock": "2024-06-01T10:00:00Z"}},
    {"payload": {"v": []}, "external": {}},                   # v.0 absent: shared reads give null
    {"payload": {"v": "no list"}, "external": {"clock": 7}},  # wrong kinds fail as alone
    {"payload": None}, None, [1, 2], "text",
])
def test_a_batch_answers_each_program_as_it_would_alone(data):
    programs = [certlogic.compile(e) for e in BATCHED]
    batch = certlogic.Batch(programs)
    values = batch(data)
    assert len(values) == len(programs)
    for program, value in zip(programs, values):
        assert agree(value, alone(program, data)), program.expression


def test_paths_two_expressions_read_are_read_once_before_them():
    batch = certlogic.Batch([certlogic.compile(e) for e in BATCHED[:3]])
    first_statements = batch.source.split("out = []")[0]
    assert first_statements.count(".get('payload')") == 1
    assert batch.source.count(".get('dn')") == 1        # payload.v.0.dn: three readers


def test_each_program_of_a_batch_has_its_own_reduce_budget_and_errors():
    """One program's failure, or its reduce work, is its own: the next starts afresh."""
    count = {"reduce": [{"var": "xs"}, {"+": [{"var": "accumulator"}, 1]}, 0]}
    steps = certlogic.MAX_REDUCE_STEPS
    batch = certlogic.Batch([certlogic.compile(count), certlogic.compile({"var": "xs.0"}),
                             certlogic.compile({"!": [{"var": "xs"}]})])
    enough = batch({"xs": [0] * steps})
    assert enough == [steps, 0, False]
    too_many = batch({"xs": [0] * (steps + 1)})
    assert type(too_many[0]) is LimitExceeded and too_many[1:] == [0, False]
    # the same program twice: each gets the whole budget
    twice = certlogic.Batch([certlogic.compile(count), certlogic.compile(dict(count))])
    assert twice({"xs": [0] * steps}) == [steps, steps]


def test_a_large_batch_is_split_and_keeps_its_answers():
    wide = [certlogic.compile({"and": [{"var": "x"}] * 1000 + [{"var": f"y{i}"}]})
            for i in range(9)]
    batch = certlogic.Batch(wide)
    assert batch.source.count("def ") > 2  # more than one batch function
    data = {"x": 1, **{f"y{i}": i for i in range(9)}}
    assert batch(data) == list(range(9))
    assert certlogic.Batch([])(data) == []


def test_a_batch_nests_branches_as_deep_as_validation_allows():
    deep = nested_in_branches(certlogic.MAX_DEPTH // 4 - 1)
    counted = {"if": [{"var": "go"}, nested_in_branches(certlogic.MAX_DEPTH // 4 - 2), 0]}
    batch = certlogic.Batch([certlogic.compile(deep), certlogic.compile(counted)])
    assert batch({"go": True, "leaf": "deep"}) == ["deep", "deep"]
    assert batch({"go": 0, "leaf": "deep"}) == [False, 0]


def test_a_batch_keeps_keys_and_strings_as_data():
    batch = certlogic.Batch([certlogic.compile({"var": HOSTILE_KEY}),
                             certlogic.compile({"===": [{"var": HOSTILE_KEY}, HOSTILE_KEY]})])
    assert batch({HOSTILE_KEY: HOSTILE_KEY}) == [HOSTILE_KEY, True]
    assert "SystemExit" not in batch.source.replace(repr(HOSTILE_KEY), "")


def test_date_times_of_different_programs_are_different_objects():
    shifted = {"plusTime": [{"var": "d"}, 1, "day"]}
    batch = certlogic.Batch([certlogic.compile(shifted), certlogic.compile(dict(shifted)),
                             certlogic.compile({"===": [shifted, shifted]})])
    first, second, same = batch({"d": "2021-01-01"})
    assert first is not second and first.ms == second.ms and same is False
