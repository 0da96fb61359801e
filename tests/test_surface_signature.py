"""The attribute kinds are written once (gradserve.surface.signature): the engine's registry, the
server's catalogue (ListOps and the wire check) and the validator all agree on every kind."""

from __future__ import annotations

import builtins

import pytest

import gradserve.engine as ge
from gradserve.server import catalogue
from gradserve.surface import signature
from gradserve.surface.signature import ATTR_KINDS, AttrSpec, AttrValidator
from gradserve.v1 import catalogue_pb2

SPECS = [(name, spec) for name, op in sorted(ge.registry.OPS.items()) for spec in op.attrs]


def test_every_kind_has_a_wire_kind_and_accepted_fields():
    assert set(catalogue.KINDS) == set(ATTR_KINDS)
    wire = [catalogue.KINDS[k][0] for k in ATTR_KINDS]
    assert catalogue_pb2.ATTR_KIND_UNSPECIFIED not in wire
    assert len(set(wire)) == len(wire)  # a client can read the kind back from the wire
    assert all(catalogue.KINDS[k][1] for k in ATTR_KINDS)


def test_every_op_attribute_has_a_known_kind():
    assert {spec.kind for _, spec in SPECS} <= set(ATTR_KINDS)
    assert all(isinstance(spec, AttrSpec) for _, spec in SPECS)


def test_list_ops_states_the_surface_rule():
    infos = {info.name: info for info in catalogue.list_ops().ops}
    for name, spec in SPECS:
        info = next(a for a in infos[name].attrs if a.name == spec.name)
        assert info.kind == catalogue.KINDS[spec.kind][0], (name, spec)
        assert info.nullable == signature.nullable(spec), (name, spec)
        assert ("none_value" in catalogue.accepted_fields(spec)) == info.nullable, (name, spec)
        assert tuple(info.choices) == spec.choices


@pytest.mark.parametrize("kind", sorted(ATTR_KINDS))
def test_none_is_accepted_exactly_where_nullable(kind):
    validator = ge.registry.ATTRS
    for default, required in ((None, False), (1, False), (None, True)):
        spec = AttrSpec("a", kind, default, required)
        if signature.nullable(spec):
            assert validator.check("op", spec, None) is None
        else:
            with pytest.raises(ge.errors.InvalidTypeError, match=r"^op\(\): argument 'a' must"):
                validator.check("op", spec, None)


def test_the_validator_raises_the_layers_own_errors():
    plain = AttrValidator(TypeError, ValueError, TypeError, lambda v: None)
    op = ge.registry.OPS["gelu"]
    for validator, type_error, value_error, unknown in (
            (ge.registry.ATTRS, ge.errors.InvalidTypeError, ge.errors.InvalidValueError,
             ge.errors.UnknownAttributeError),
            (plain, TypeError, ValueError, TypeError)):
        with pytest.raises(type_error, match=r"^gelu\(\): argument 'approximate' must be str, "
                                             "not int$"):
            validator.bind("gelu", 1, op.attrs, (), {"approximate": 1})
        with pytest.raises(value_error, match=r"^gelu\(\): approximate='x' is not one of none, "
                                              "tanh$"):
            validator.bind("gelu", 1, op.attrs, (), {"approximate": "x"})
        with pytest.raises(unknown, match=r"^gelu\(\) got an unexpected keyword argument 'b'$"):
            validator.bind("gelu", 1, op.attrs, (), {"b": 1})
        with pytest.raises(unknown, match=r"^gelu\(\) got an unexpected keyword argument 'b'$"):
            validator.check_names("gelu", op.attrs, ["approximate", "b"])
        validator.check_names("gelu", op.attrs, ["approximate"])
        with pytest.raises(type_error, match=r"^gelu\(\) takes 2 arguments but 3 were given$"):
            validator.bind("gelu", 1, op.attrs, ("none", 1), {})


# --- the client: the same specs from ListOps, the same validator before sending ------------------

def test_the_client_reads_the_engines_specs_from_list_ops():
    from gradserve.client.ops import attr_specs

    for info in catalogue.list_ops().ops:
        specs = attr_specs(info)
        engine = ge.registry.OPS[info.name].attrs
        assert specs is not None
        assert [(s.name, s.kind, s.required, s.choices) for s in specs] == \
            [(s.name, s.kind, s.required, s.choices) for s in engine], info.name
        assert [signature.nullable(s) for s in specs] == [a.nullable for a in info.attrs]


def test_the_client_reads_the_engines_flags_from_list_ops():
    from gradserve.client.ops import OpTable

    table = OpTable(catalogue.list_ops())
    for name, op in ge.registry.OPS.items():
        spec = table.ops[name]
        assert (spec.n_outputs, spec.output_count, spec.inplace, spec.view, spec.random) == (
            op.n_outputs, op.output_count or "", op.inplace, op.view, op.random), name
    assert table.inplace == {n + "_" for n, op in ge.registry.OPS.items() if op.inplace}
    assert {n for n, op in ge.registry.OPS.items() if op.random} >= {"rand", "randn", "randint"}
    assert {n for n, op in ge.registry.OPS.items() if op.view} >= {"reshape", "expand", "unbind"}


def test_a_client_of_an_older_server_still_counts_outputs():
    from gradserve.client.ops import LEGACY_OUTPUT_COUNTS, OpSpec

    for info in catalogue.list_ops().ops:
        if info.output_count:
            old = catalogue_pb2.OpInfo()
            old.CopyFrom(info)
            old.ClearField("output_count")  # as servers before 0.2.0 send it
            assert OpSpec(old).output_count == info.output_count, info.name
    assert set(LEGACY_OUTPUT_COUNTS.values()) <= set(signature.OUTPUT_COUNTS)


COUNT_CASES = [
    ("split", (5, 2), {"split_size": 2}), ("split", (5, 2), {"split_size": 5}),
    ("split", (5, 2), {"split_size": 7}), ("split", (5, 4), {"split_size": 3, "dim": 1}),
    ("split", (5, 4), {"split_size": 3, "dim": -1}), ("split", (0, 3), {"split_size": 2}),
    ("split_with_sizes", (5, 2), {"split_sizes": (1, 4)}),
    ("split_with_sizes", (5, 6), {"split_sizes": (1, 2, 3), "dim": 1}),
    ("unbind", (3, 2), {}), ("unbind", (3, 2), {"dim": 1}), ("unbind", (3, 2, 4), {"dim": -1}),
    ("unbind", (1,), {}),
]


@pytest.mark.parametrize(("name", "shape", "attrs"), COUNT_CASES)
def test_the_surfaces_output_count_is_the_engines(name, shape, attrs):
    op = ge.registry.OPS[name]
    outs = ge.apply(name, [ge.zeros(*shape)], attrs)
    assert signature.count_outputs(op.output_count, shape, attrs) == len(outs)


@pytest.mark.parametrize(("rule", "shape", "attrs"), [
    ("split_size", (), {"split_size": 2}), ("split_size", (4,), {"split_size": 0}),
    ("split_size", (4,), {"split_size": 2, "dim": 1}), ("dim_size", (4,), {"dim": -2}),
    ("split_sizes", (4,), {"split_sizes": None}), ("split_size", (4,), {"split_size": True}),
])
def test_arguments_the_engine_refuses_count_as_one_output(rule, shape, attrs):
    # one handle for the engine's error to come back to
    assert signature.count_outputs(rule, shape, attrs) == 1


def test_an_op_without_a_fixed_output_count_names_its_rule():
    import numpy as np

    def bound(args, attrs, dtype):
        return None

    with pytest.raises(ValueError, match="output_count"):
        ge.registry.defop("pieces_probe", np.array_split, n_outputs=None, out_bound=bound)
    with pytest.raises(ValueError, match="output_count"):
        ge.registry.defop("pieces_probe", np.array_split, n_outputs=None,
                          output_count="pieces", out_bound=bound)
    with pytest.raises(ValueError, match="output_count"):
        ge.registry.defop("pieces_probe", np.sin, output_count="dim_size", out_bound=bound)
    assert "pieces_probe" not in ge.registry.OPS


@pytest.fixture(scope="module")
def client(gradserve_server):
    import gradserve.client as gc_client

    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


BAD_CALLS = [
    ("sum", {"dim": "a"}),
    ("sum", {"keepdim": 1}),
    ("sum", {"dtype": "complex"}),
    ("sum", {"dtype": 3}),
    ("sum", {"bogus": 1}),
    ("gelu", {"approximate": "x"}),
    ("clamp", {"min": [1]}),
]


@pytest.mark.parametrize(("name", "kwargs"), BAD_CALLS)
def test_a_bad_attribute_fails_locally_as_in_process(client, name, kwargs):
    with pytest.raises(ge.errors.EngineError) as in_process:
        getattr(ge, name)(ge.tensor([1.0, 2.0]), **kwargs)
    builtin = getattr(builtins, in_process.value.builtin_name)
    with client.session() as s:
        x = s.tensor([1.0, 2.0])
        before = s.round_trips
        with pytest.raises(builtin) as remote:
            getattr(s, name)(x, **kwargs)
        assert s.round_trips == before  # raised on this line, before anything was recorded
    assert str(remote.value) == str(in_process.value)
    assert type(remote.value) is builtin


# --- the client's binding plans (client/ops.py OpSpec._plan) --------------------------------------

_PLAN_VALUES = (0, 1, -1, True, 2.5, -0.0, "mean", "nope", None, (0, 1), [1], (), "float64")


def _bound_or_error(spec, args, kwargs):
    try:
        inputs, attrs = spec.bind(args, dict(kwargs))
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return type(exc), str(exc)
    return inputs, attrs


def _full(spec, args, kwargs):
    from gradserve.surface.binding import torch_keywords

    try:
        return spec._bind(args, dict(torch_keywords(dict(kwargs), spec.params)))
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return type(exc), str(exc)


def test_a_planned_binding_is_the_full_binding():
    """Every op with inputs and attributes, called with each attribute given positionally or by
    keyword (numpy's name too) with values of every kind, twice (the plan is made on the first
    call): the same inputs and attributes (and attribute values' types), or the same error, as
    the full binding."""
    from gradserve.client.ops import OpTable

    table = OpTable(catalogue.list_ops())
    planned = 0
    for spec in table.ops.values():
        if not spec.inputs or not spec.attrs or spec.variadic:
            continue
        xs = tuple(object() for _ in spec.inputs)
        calls = []
        for v in _PLAN_VALUES:
            calls.append((xs + (v,), {}))
            calls.append((xs, {spec.attrs[0]: v}))
            if spec.attrs[0] == "dim":
                calls.append((xs, {"axis": v}))
            if len(spec.attrs) > 1:
                calls.append((xs + (v, v), {}))
                calls.append((xs + (v,), {spec.attrs[1]: v}))
                calls.append((xs, {spec.attrs[1]: v, spec.attrs[0]: 1}))
        calls.append((xs, {"bogus": 1}))
        calls += [(xs + (2, 3, 4), {}), (xs + (2, 3, "x"), {}), (xs + (2, (3,)), {}),
                  (xs + (2, 3), {spec.attrs[-1]: 1})]  # torch's *size varargs where taken
        calls.append((xs + (1,), {spec.attrs[0]: 1}))
        for args, kwargs in calls:
            want = _full(spec, args, kwargs)
            for _ in range(2):
                got = _bound_or_error(spec, args, kwargs)
                assert got == want, f"{spec.name}{args[len(xs):]} {kwargs}: {got} != {want}"
                if isinstance(want, tuple) and isinstance(want[1], dict):
                    assert [type(v) for v in got[1].values()] == [
                        type(want[1][k]) for k in got[1]]
                    assert str(got[1]) == str({k: want[1][k] for k in got[1]})  # -0.0 stays
        planned += any(plan for plan in spec._plans.values())
    assert planned > 50
