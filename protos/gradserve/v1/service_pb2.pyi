from gradserve.v1 import catalogue_pb2 as _catalogue_pb2
from gradserve.v1 import graph_pb2 as _graph_pb2
from gradserve.v1 import session_pb2 as _session_pb2
from gradserve.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FunctionalKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUNCTIONAL_KIND_UNSPECIFIED: _ClassVar[FunctionalKind]
    FUNCTIONAL_KIND_JACOBIAN: _ClassVar[FunctionalKind]
    FUNCTIONAL_KIND_HESSIAN: _ClassVar[FunctionalKind]
    FUNCTIONAL_KIND_VJP: _ClassVar[FunctionalKind]
    FUNCTIONAL_KIND_JVP: _ClassVar[FunctionalKind]
    FUNCTIONAL_KIND_VHP: _ClassVar[FunctionalKind]
    FUNCTIONAL_KIND_HVP: _ClassVar[FunctionalKind]
FUNCTIONAL_KIND_UNSPECIFIED: FunctionalKind
FUNCTIONAL_KIND_JACOBIAN: FunctionalKind
FUNCTIONAL_KIND_HESSIAN: FunctionalKind
FUNCTIONAL_KIND_VJP: FunctionalKind
FUNCTIONAL_KIND_JVP: FunctionalKind
FUNCTIONAL_KIND_VHP: FunctionalKind
FUNCTIONAL_KIND_HVP: FunctionalKind

class NamedTensor(_message.Message):
    __slots__ = ("name", "tensor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    tensor: _tensor_pb2.Tensor
    def __init__(self, name: _Optional[str] = ..., tensor: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class RunGraphRequest(_message.Message):
    __slots__ = ("graph", "inputs", "wrt", "output_grads", "order", "allow_unused", "session_id", "functional")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
    class OutputGradsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    WRT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_GRADS_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNUSED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONAL_FIELD_NUMBER: _ClassVar[int]
    graph: _graph_pb2.Graph
    inputs: _containers.MessageMap[str, _tensor_pb2.Tensor]
    wrt: _containers.RepeatedScalarFieldContainer[str]
    output_grads: _containers.MessageMap[str, _tensor_pb2.Tensor]
    order: int
    allow_unused: bool
    session_id: str
    functional: FunctionalCall
    def __init__(self, graph: _Optional[_Union[_graph_pb2.Graph, _Mapping]] = ..., inputs: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ..., wrt: _Optional[_Iterable[str]] = ..., output_grads: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ..., order: _Optional[int] = ..., allow_unused: _Optional[bool] = ..., session_id: _Optional[str] = ..., functional: _Optional[_Union[FunctionalCall, _Mapping]] = ...) -> None: ...

class FunctionalCall(_message.Message):
    __slots__ = ("kind", "v", "strict", "inputs_tuple", "outputs_tuple")
    KIND_FIELD_NUMBER: _ClassVar[int]
    V_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_TUPLE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_TUPLE_FIELD_NUMBER: _ClassVar[int]
    kind: FunctionalKind
    v: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    strict: bool
    inputs_tuple: bool
    outputs_tuple: bool
    def __init__(self, kind: _Optional[_Union[FunctionalKind, str]] = ..., v: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., strict: _Optional[bool] = ..., inputs_tuple: _Optional[bool] = ..., outputs_tuple: _Optional[bool] = ...) -> None: ...

class InputGradients(_message.Message):
    __slots__ = ("name", "derivatives")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DERIVATIVES_FIELD_NUMBER: _ClassVar[int]
    name: str
    derivatives: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.MaybeTensor]
    def __init__(self, name: _Optional[str] = ..., derivatives: _Optional[_Iterable[_Union[_tensor_pb2.MaybeTensor, _Mapping]]] = ...) -> None: ...

class RunGraphResponse(_message.Message):
    __slots__ = ("outputs", "gradients", "functional_result")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONAL_RESULT_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[NamedTensor]
    gradients: _containers.RepeatedCompositeFieldContainer[InputGradients]
    functional_result: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.MaybeTensor]
    def __init__(self, outputs: _Optional[_Iterable[_Union[NamedTensor, _Mapping]]] = ..., gradients: _Optional[_Iterable[_Union[InputGradients, _Mapping]]] = ..., functional_result: _Optional[_Iterable[_Union[_tensor_pb2.MaybeTensor, _Mapping]]] = ...) -> None: ...
