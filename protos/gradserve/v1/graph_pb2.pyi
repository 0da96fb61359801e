from gradserve.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeOutput(_message.Message):
    __slots__ = ("id", "index")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    id: str
    index: int
    def __init__(self, id: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("handle", "ref", "constant", "float_scalar", "int_scalar", "bool_scalar", "none")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    CONSTANT_FIELD_NUMBER: _ClassVar[int]
    FLOAT_SCALAR_FIELD_NUMBER: _ClassVar[int]
    INT_SCALAR_FIELD_NUMBER: _ClassVar[int]
    BOOL_SCALAR_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    ref: NodeOutput
    constant: _tensor_pb2.Tensor
    float_scalar: float
    int_scalar: int
    bool_scalar: bool
    none: _tensor_pb2.NoneValue
    def __init__(self, handle: _Optional[int] = ..., ref: _Optional[_Union[NodeOutput, _Mapping]] = ..., constant: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., float_scalar: _Optional[float] = ..., int_scalar: _Optional[int] = ..., bool_scalar: _Optional[bool] = ..., none: _Optional[_Union[_tensor_pb2.NoneValue, _Mapping]] = ...) -> None: ...

class IntList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class AttrValue(_message.Message):
    __slots__ = ("int_value", "float_value", "bool_value", "string_value", "ints_value", "dtype_value", "none_value")
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INTS_VALUE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_VALUE_FIELD_NUMBER: _ClassVar[int]
    NONE_VALUE_FIELD_NUMBER: _ClassVar[int]
    int_value: int
    float_value: float
    bool_value: bool
    string_value: str
    ints_value: IntList
    dtype_value: _tensor_pb2.DType
    none_value: _tensor_pb2.NoneValue
    def __init__(self, int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., string_value: _Optional[str] = ..., ints_value: _Optional[_Union[IntList, _Mapping]] = ..., dtype_value: _Optional[_Union[_tensor_pb2.DType, str]] = ..., none_value: _Optional[_Union[_tensor_pb2.NoneValue, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "op", "inputs", "attrs", "no_grad")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttrValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttrValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    NO_GRAD_FIELD_NUMBER: _ClassVar[int]
    id: str
    op: str
    inputs: _containers.RepeatedCompositeFieldContainer[Value]
    attrs: _containers.MessageMap[str, AttrValue]
    no_grad: bool
    def __init__(self, id: _Optional[str] = ..., op: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., attrs: _Optional[_Mapping[str, AttrValue]] = ..., no_grad: _Optional[bool] = ...) -> None: ...

class GraphInput(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GraphOutput(_message.Message):
    __slots__ = ("name", "ref")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    name: str
    ref: NodeOutput
    def __init__(self, name: _Optional[str] = ..., ref: _Optional[_Union[NodeOutput, _Mapping]] = ...) -> None: ...

class Graph(_message.Message):
    __slots__ = ("opset_version", "inputs", "nodes", "outputs")
    OPSET_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    opset_version: int
    inputs: _containers.RepeatedCompositeFieldContainer[GraphInput]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    outputs: _containers.RepeatedCompositeFieldContainer[GraphOutput]
    def __init__(self, opset_version: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[GraphInput, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[GraphOutput, _Mapping]]] = ...) -> None: ...
