from gradserve.v1 import graph_pb2 as _graph_pb2
from gradserve.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttrKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTR_KIND_UNSPECIFIED: _ClassVar[AttrKind]
    ATTR_KIND_INT: _ClassVar[AttrKind]
    ATTR_KIND_FLOAT: _ClassVar[AttrKind]
    ATTR_KIND_BOOL: _ClassVar[AttrKind]
    ATTR_KIND_STRING: _ClassVar[AttrKind]
    ATTR_KIND_INTS: _ClassVar[AttrKind]
    ATTR_KIND_SCALAR: _ClassVar[AttrKind]
    ATTR_KIND_DTYPE: _ClassVar[AttrKind]
    ATTR_KIND_OPTIONAL_INT: _ClassVar[AttrKind]
    ATTR_KIND_INT_OR_INTS: _ClassVar[AttrKind]
    ATTR_KIND_SCALAR_OR_NONE: _ClassVar[AttrKind]
    ATTR_KIND_OPTIONAL_FLOAT: _ClassVar[AttrKind]
ATTR_KIND_UNSPECIFIED: AttrKind
ATTR_KIND_INT: AttrKind
ATTR_KIND_FLOAT: AttrKind
ATTR_KIND_BOOL: AttrKind
ATTR_KIND_STRING: AttrKind
ATTR_KIND_INTS: AttrKind
ATTR_KIND_SCALAR: AttrKind
ATTR_KIND_DTYPE: AttrKind
ATTR_KIND_OPTIONAL_INT: AttrKind
ATTR_KIND_INT_OR_INTS: AttrKind
ATTR_KIND_SCALAR_OR_NONE: AttrKind
ATTR_KIND_OPTIONAL_FLOAT: AttrKind

class AttrInfo(_message.Message):
    __slots__ = ("name", "kind", "required", "default_value", "choices", "nullable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: AttrKind
    required: bool
    default_value: _graph_pb2.AttrValue
    choices: _containers.RepeatedScalarFieldContainer[str]
    nullable: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[AttrKind, str]] = ..., required: _Optional[bool] = ..., default_value: _Optional[_Union[_graph_pb2.AttrValue, _Mapping]] = ..., choices: _Optional[_Iterable[str]] = ..., nullable: _Optional[bool] = ...) -> None: ...

class OpInfo(_message.Message):
    __slots__ = ("name", "inputs", "variadic", "attrs", "n_outputs", "differentiable", "backward_name", "doc", "optional_inputs", "backward_names", "output_count", "inplace", "view", "random")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    VARIADIC_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    N_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENTIABLE_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_NAME_FIELD_NUMBER: _ClassVar[int]
    DOC_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_INPUTS_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_NAMES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    INPLACE_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    RANDOM_FIELD_NUMBER: _ClassVar[int]
    name: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    variadic: bool
    attrs: _containers.RepeatedCompositeFieldContainer[AttrInfo]
    n_outputs: int
    differentiable: bool
    backward_name: str
    doc: str
    optional_inputs: _containers.RepeatedScalarFieldContainer[str]
    backward_names: _containers.RepeatedScalarFieldContainer[str]
    output_count: str
    inplace: bool
    view: bool
    random: bool
    def __init__(self, name: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., variadic: _Optional[bool] = ..., attrs: _Optional[_Iterable[_Union[AttrInfo, _Mapping]]] = ..., n_outputs: _Optional[int] = ..., differentiable: _Optional[bool] = ..., backward_name: _Optional[str] = ..., doc: _Optional[str] = ..., optional_inputs: _Optional[_Iterable[str]] = ..., backward_names: _Optional[_Iterable[str]] = ..., output_count: _Optional[str] = ..., inplace: _Optional[bool] = ..., view: _Optional[bool] = ..., random: _Optional[bool] = ...) -> None: ...

class ListOpsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListOpsResponse(_message.Message):
    __slots__ = ("opset_version", "dtypes", "ops", "inplace_ops", "server_version", "protocol_version", "features")
    OPSET_VERSION_FIELD_NUMBER: _ClassVar[int]
    DTYPES_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    INPLACE_OPS_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    opset_version: int
    dtypes: _containers.RepeatedScalarFieldContainer[_tensor_pb2.DType]
    ops: _containers.RepeatedCompositeFieldContainer[OpInfo]
    inplace_ops: _containers.RepeatedScalarFieldContainer[str]
    server_version: str
    protocol_version: int
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, opset_version: _Optional[int] = ..., dtypes: _Optional[_Iterable[_Union[_tensor_pb2.DType, str]]] = ..., ops: _Optional[_Iterable[_Union[OpInfo, _Mapping]]] = ..., inplace_ops: _Optional[_Iterable[str]] = ..., server_version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...
