"""The attribute kinds are written once (gradserve.surface.signature): the engine's registry, the
server's catalogue (ListOps and the wire check) and the validator all agree on every kind."""

from __future__ import annotations

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
        with pytest.raises(type_error, match=r"^gelu\(\) takes 2 arguments but 3 were given$"):
            validator.bind("gelu", 1, op.attrs, ("none", 1), {})
