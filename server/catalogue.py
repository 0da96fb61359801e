"""The op catalogue (ListOps), generated from the engine's registry — never listed by hand."""

from __future__ import annotations

import functools
from typing import Any

import gradserve.engine as ge
from gradserve.engine import cascade
from gradserve.surface.signature import nullable
from gradserve.v1 import (
    BACKWARD_ROOTS_FEATURE,
    BATCH_AFTER_FEATURE,
    FETCH_GRAD_REPR_FEATURE,
    GENERATOR_FEATURE,
    GET_BASE_FEATURE,
    GET_SAVED_FEATURE,
    OMIT_INFO_FEATURE,
    ONEDNN_LSTM_FEATURE,
    PACK_SAVED_FEATURE,
    PROTOCOL_VERSION,
    SET_DATA_FEATURE,
    STEP_HYPERPARAMETERS_FEATURE,
    TAPE_ATTRS_FEATURE,
    TAPE_FEATURE,
    TAPE_INSTRUCTIONS_FEATURE,
    attrs,
    catalogue_pb2,
    tensor_pb2,
)

from . import codec, package_version

# The wire column of the surface's attribute kinds (kept with the wire, `gradserve.v1.attrs`).
KINDS = attrs.WIRE_KINDS


def accepted_fields(spec: Any) -> frozenset[str] | None:
    """AttrValue fields accepted for `spec`; None for an unknown kind (the engine judges)."""
    entry = KINDS.get(spec.kind)
    if entry is None:
        return None
    return entry[1] | ({"none_value"} if nullable(spec) else frozenset())


def inplace_names() -> list[str]:
    """Wire names of the in-place ops (`add_`, ...)."""
    return sorted(name + "_" for name, op in ge.registry.OPS.items() if op.inplace)



@functools.lru_cache(maxsize=1)
def list_ops() -> catalogue_pb2.ListOpsResponse:
    """The catalogue; built once (the registry does not change while serving)."""
    resp = catalogue_pb2.ListOpsResponse(opset_version=ge.OPSET_VERSION,
                                         server_version=package_version(),
                                         protocol_version=PROTOCOL_VERSION,
                                         features=[TAPE_FEATURE, TAPE_ATTRS_FEATURE,
                                                   TAPE_INSTRUCTIONS_FEATURE,
                                                   OMIT_INFO_FEATURE,
                                                   STEP_HYPERPARAMETERS_FEATURE,
                                                   GENERATOR_FEATURE,
                                                   FETCH_GRAD_REPR_FEATURE,
                                                   GET_SAVED_FEATURE,
                                                   PACK_SAVED_FEATURE,
                                                   GET_BASE_FEATURE,
                                                   BACKWARD_ROOTS_FEATURE,
                                                   SET_DATA_FEATURE,
                                                   BATCH_AFTER_FEATURE])
    if cascade.ONEDNN_AVX512:
        resp.features.append(ONEDNN_LSTM_FEATURE)
    resp.dtypes.extend(codec.wire_dtype(name) for name in ge.dtypes.DTYPES)
    for name in sorted(ge.registry.OPS):
        op = ge.registry.OPS[name]
        info = resp.ops.add(name=name, variadic=op.variadic, differentiable=op.differentiable,
                            backward_name=op.backward_name if op.differentiable else "",
                            doc=op.doc, output_count=op.output_count or "",
                            inplace=op.inplace, view=op.view, random=op.random)
        info.inputs.extend(op.inputs)
        info.backward_names.extend(op.backward_names)
        info.optional_inputs.extend(i for i, opt in zip(op.inputs, op.optional) if opt)
        if op.n_outputs is not None:
            info.n_outputs = op.n_outputs
        for spec in op.attrs:
            attr = info.attrs.add(name=spec.name, required=spec.required,
                                  nullable=nullable(spec))
            attr.kind = KINDS.get(spec.kind, (catalogue_pb2.ATTR_KIND_UNSPECIFIED,))[0]
            attr.choices.extend(getattr(spec, "choices", ()) or ())
            if not spec.required:
                codec.encode_attr(spec.default, attr.default_value)
    resp.inplace_ops.extend(inplace_names())
    return resp


SUPPORTED_DTYPES = tuple(tensor_pb2.DType.Name(codec.wire_dtype(n)) for n in ge.dtypes.DTYPES)
