from gradserve.v1 import catalogue_pb2 as _catalogue_pb2
from gradserve.v1 import graph_pb2 as _graph_pb2
from gradserve.v1 import session_pb2 as _session_pb2
from gradserve.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NamedTensor(_message.Message):
    __slots__ = ("name", "tensor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    tensor: _tensor_pb2.Tensor
    def __init__(self, name: _Optional[str] = ..., tensor: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class RunGraphRequest(_message.Message):
    __slots__ = ("graph", "inputs", "wrt", "output_grads", "order", "allow_unused", "session_id")
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
    graph: _graph_pb2.Graph
    inputs: _containers.MessageMap[str, _tensor_pb2.Tensor]
    wrt: _containers.RepeatedScalarFieldContainer[str]
    output_grads: _containers.MessageMap[str, _tensor_pb2.Tensor]
    order: int
    allow_unused: bool
    session_id: str
    def __init__(self, graph: _Optional[_Union[_graph_pb2.Graph, _Mapping]] = ..., inputs: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ..., wrt: _Optional[_Iterable[str]] = ..., output_grads: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ..., order: _Optional[int] = ..., allow_unused: _Optional[bool] = ..., session_id: _Optional[str] = ...) -> None: ...

class InputGradients(_message.Message):
    __slots__ = ("name", "derivatives")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DERIVATIVES_FIELD_NUMBER: _ClassVar[int]
    name: str
    derivatives: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.MaybeTensor]
    def __init__(self, name: _Optional[str] = ..., derivatives: _Optional[_Iterable[_Union[_tensor_pb2.MaybeTensor, _Mapping]]] = ...) -> None: ...

class RunGraphResponse(_message.Message):
    __slots__ = ("outputs", "gradients")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[NamedTensor]
    gradients: _containers.RepeatedCompositeFieldContainer[InputGradients]
    def __init__(self, outputs: _Optional[_Iterable[_Union[NamedTensor, _Mapping]]] = ..., gradients: _Optional[_Iterable[_Union[InputGradients, _Mapping]]] = ...) -> None: ...
