from gradserve.v1 import graph_pb2 as _graph_pb2
from gradserve.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionLimits(_message.Message):
    __slots__ = ("max_bytes", "max_tensor_elements", "max_instructions", "max_handles")
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TENSOR_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_HANDLES_FIELD_NUMBER: _ClassVar[int]
    max_bytes: int
    max_tensor_elements: int
    max_instructions: int
    max_handles: int
    def __init__(self, max_bytes: _Optional[int] = ..., max_tensor_elements: _Optional[int] = ..., max_instructions: _Optional[int] = ..., max_handles: _Optional[int] = ...) -> None: ...

class SessionOptions(_message.Message):
    __slots__ = ("idle_ttl_seconds", "limits", "seed")
    IDLE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    idle_ttl_seconds: float
    limits: SessionLimits
    seed: int
    def __init__(self, idle_ttl_seconds: _Optional[float] = ..., limits: _Optional[_Union[SessionLimits, _Mapping]] = ..., seed: _Optional[int] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("options",)
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    options: SessionOptions
    def __init__(self, options: _Optional[_Union[SessionOptions, _Mapping]] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session_id", "info")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    info: SessionInfo
    def __init__(self, session_id: _Optional[str] = ..., info: _Optional[_Union[SessionInfo, _Mapping]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "tensor_count", "bytes_held", "saved_bytes", "idle_seconds", "idle_ttl_seconds", "limits", "optimizer_count")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TENSOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_HELD_FIELD_NUMBER: _ClassVar[int]
    SAVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_COUNT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    tensor_count: int
    bytes_held: int
    saved_bytes: int
    idle_seconds: float
    idle_ttl_seconds: float
    limits: SessionLimits
    optimizer_count: int
    def __init__(self, session_id: _Optional[str] = ..., tensor_count: _Optional[int] = ..., bytes_held: _Optional[int] = ..., saved_bytes: _Optional[int] = ..., idle_seconds: _Optional[float] = ..., idle_ttl_seconds: _Optional[float] = ..., limits: _Optional[_Union[SessionLimits, _Mapping]] = ..., optimizer_count: _Optional[int] = ...) -> None: ...

class CreateTensor(_message.Message):
    __slots__ = ("handle", "value", "requires_grad")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    handle: int
    value: _tensor_pb2.Tensor
    requires_grad: bool
    def __init__(self, handle: _Optional[int] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., requires_grad: _Optional[bool] = ...) -> None: ...

class ApplyOp(_message.Message):
    __slots__ = ("op", "inputs", "attrs", "no_grad", "outputs", "omit_info", "generator")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _graph_pb2.AttrValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_graph_pb2.AttrValue, _Mapping]] = ...) -> None: ...
    OP_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    NO_GRAD_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    OMIT_INFO_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    op: str
    inputs: _containers.RepeatedCompositeFieldContainer[_graph_pb2.Value]
    attrs: _containers.MessageMap[str, _graph_pb2.AttrValue]
    no_grad: bool
    outputs: _containers.RepeatedScalarFieldContainer[int]
    omit_info: bool
    generator: int
    def __init__(self, op: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[_graph_pb2.Value, _Mapping]]] = ..., attrs: _Optional[_Mapping[str, _graph_pb2.AttrValue]] = ..., no_grad: _Optional[bool] = ..., outputs: _Optional[_Iterable[int]] = ..., omit_info: _Optional[bool] = ..., generator: _Optional[int] = ...) -> None: ...

class Tape(_message.Message):
    __slots__ = ("ops", "code", "floats", "ints", "constants", "attrs", "attr_names", "strings")
    OPS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FLOATS_FIELD_NUMBER: _ClassVar[int]
    INTS_FIELD_NUMBER: _ClassVar[int]
    CONSTANTS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    ATTR_NAMES_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedScalarFieldContainer[str]
    code: bytes
    floats: bytes
    ints: bytes
    constants: _containers.RepeatedCompositeFieldContainer[_tensor_pb2.Tensor]
    attrs: bytes
    attr_names: _containers.RepeatedScalarFieldContainer[str]
    strings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ops: _Optional[_Iterable[str]] = ..., code: _Optional[bytes] = ..., floats: _Optional[bytes] = ..., ints: _Optional[bytes] = ..., constants: _Optional[_Iterable[_Union[_tensor_pb2.Tensor, _Mapping]]] = ..., attrs: _Optional[bytes] = ..., attr_names: _Optional[_Iterable[str]] = ..., strings: _Optional[_Iterable[str]] = ...) -> None: ...

class HandleValue(_message.Message):
    __slots__ = ("handle", "value")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    value: _tensor_pb2.Tensor
    def __init__(self, handle: _Optional[int] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class TapeResult(_message.Message):
    __slots__ = ("tensors", "values")
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    values: _containers.RepeatedCompositeFieldContainer[HandleValue]
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., values: _Optional[_Iterable[_Union[HandleValue, _Mapping]]] = ...) -> None: ...

class ApplyInplace(_message.Message):
    __slots__ = ("op", "target", "inputs", "attrs", "no_grad", "generator")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _graph_pb2.AttrValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_graph_pb2.AttrValue, _Mapping]] = ...) -> None: ...
    OP_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    NO_GRAD_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    op: str
    target: int
    inputs: _containers.RepeatedCompositeFieldContainer[_graph_pb2.Value]
    attrs: _containers.MessageMap[str, _graph_pb2.AttrValue]
    no_grad: bool
    generator: int
    def __init__(self, op: _Optional[str] = ..., target: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[_graph_pb2.Value, _Mapping]]] = ..., attrs: _Optional[_Mapping[str, _graph_pb2.AttrValue]] = ..., no_grad: _Optional[bool] = ..., generator: _Optional[int] = ...) -> None: ...

class Backward(_message.Message):
    __slots__ = ("tensor", "gradient", "retain_graph", "create_graph", "inputs", "more_tensors", "more_gradients", "check_nan")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    RETAIN_GRAPH_FIELD_NUMBER: _ClassVar[int]
    CREATE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MORE_TENSORS_FIELD_NUMBER: _ClassVar[int]
    MORE_GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    CHECK_NAN_FIELD_NUMBER: _ClassVar[int]
    tensor: int
    gradient: _graph_pb2.Value
    retain_graph: bool
    create_graph: bool
    inputs: _containers.RepeatedScalarFieldContainer[int]
    more_tensors: _containers.RepeatedScalarFieldContainer[int]
    more_gradients: _containers.RepeatedCompositeFieldContainer[_graph_pb2.Value]
    check_nan: bool
    def __init__(self, tensor: _Optional[int] = ..., gradient: _Optional[_Union[_graph_pb2.Value, _Mapping]] = ..., retain_graph: _Optional[bool] = ..., create_graph: _Optional[bool] = ..., inputs: _Optional[_Iterable[int]] = ..., more_tensors: _Optional[_Iterable[int]] = ..., more_gradients: _Optional[_Iterable[_Union[_graph_pb2.Value, _Mapping]]] = ..., check_nan: _Optional[bool] = ...) -> None: ...

class Grad(_message.Message):
    __slots__ = ("outputs", "inputs", "grad_outputs", "retain_graph", "create_graph", "allow_unused", "results", "check_nan")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RETAIN_GRAPH_FIELD_NUMBER: _ClassVar[int]
    CREATE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNUSED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CHECK_NAN_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedScalarFieldContainer[int]
    inputs: _containers.RepeatedScalarFieldContainer[int]
    grad_outputs: _containers.RepeatedCompositeFieldContainer[_graph_pb2.Value]
    retain_graph: bool
    create_graph: bool
    allow_unused: bool
    results: _containers.RepeatedScalarFieldContainer[int]
    check_nan: bool
    def __init__(self, outputs: _Optional[_Iterable[int]] = ..., inputs: _Optional[_Iterable[int]] = ..., grad_outputs: _Optional[_Iterable[_Union[_graph_pb2.Value, _Mapping]]] = ..., retain_graph: _Optional[bool] = ..., create_graph: _Optional[bool] = ..., allow_unused: _Optional[bool] = ..., results: _Optional[_Iterable[int]] = ..., check_nan: _Optional[bool] = ...) -> None: ...

class ZeroGrad(_message.Message):
    __slots__ = ("handles",)
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, handles: _Optional[_Iterable[int]] = ...) -> None: ...

class SetGrad(_message.Message):
    __slots__ = ("handle", "grad_handle", "none")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    GRAD_HANDLE_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    grad_handle: int
    none: _tensor_pb2.NoneValue
    def __init__(self, handle: _Optional[int] = ..., grad_handle: _Optional[int] = ..., none: _Optional[_Union[_tensor_pb2.NoneValue, _Mapping]] = ...) -> None: ...

class GetGrad(_message.Message):
    __slots__ = ("handle", "result")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    handle: int
    result: int
    def __init__(self, handle: _Optional[int] = ..., result: _Optional[int] = ...) -> None: ...

class SetRequiresGrad(_message.Message):
    __slots__ = ("handle", "requires_grad")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    handle: int
    requires_grad: bool
    def __init__(self, handle: _Optional[int] = ..., requires_grad: _Optional[bool] = ...) -> None: ...

class Detach(_message.Message):
    __slots__ = ("handle", "result", "own_version")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    OWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    handle: int
    result: int
    own_version: bool
    def __init__(self, handle: _Optional[int] = ..., result: _Optional[int] = ..., own_version: _Optional[bool] = ...) -> None: ...

class DetachInplace(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    def __init__(self, handle: _Optional[int] = ...) -> None: ...

class RetainGrad(_message.Message):
    __slots__ = ("handle",)
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    def __init__(self, handle: _Optional[int] = ...) -> None: ...

class IndexSlice(_message.Message):
    __slots__ = ("start", "stop", "step")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    step: int
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ..., step: _Optional[int] = ...) -> None: ...

class IndexItem(_message.Message):
    __slots__ = ("integer", "slice", "new_axis", "ellipsis", "boolean", "tensor")
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    NEW_AXIS_FIELD_NUMBER: _ClassVar[int]
    ELLIPSIS_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    integer: int
    slice: IndexSlice
    new_axis: _tensor_pb2.NoneValue
    ellipsis: _tensor_pb2.NoneValue
    boolean: bool
    tensor: _graph_pb2.Value
    def __init__(self, integer: _Optional[int] = ..., slice: _Optional[_Union[IndexSlice, _Mapping]] = ..., new_axis: _Optional[_Union[_tensor_pb2.NoneValue, _Mapping]] = ..., ellipsis: _Optional[_Union[_tensor_pb2.NoneValue, _Mapping]] = ..., boolean: _Optional[bool] = ..., tensor: _Optional[_Union[_graph_pb2.Value, _Mapping]] = ...) -> None: ...

class TensorIndex(_message.Message):
    __slots__ = ("items", "single")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SINGLE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[IndexItem]
    single: bool
    def __init__(self, items: _Optional[_Iterable[_Union[IndexItem, _Mapping]]] = ..., single: _Optional[bool] = ...) -> None: ...

class Index(_message.Message):
    __slots__ = ("tensor", "index", "no_grad", "result")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NO_GRAD_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    tensor: int
    index: TensorIndex
    no_grad: bool
    result: int
    def __init__(self, tensor: _Optional[int] = ..., index: _Optional[_Union[TensorIndex, _Mapping]] = ..., no_grad: _Optional[bool] = ..., result: _Optional[int] = ...) -> None: ...

class IndexPut(_message.Message):
    __slots__ = ("target", "index", "value", "no_grad")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NO_GRAD_FIELD_NUMBER: _ClassVar[int]
    target: int
    index: TensorIndex
    value: _graph_pb2.Value
    no_grad: bool
    def __init__(self, target: _Optional[int] = ..., index: _Optional[_Union[TensorIndex, _Mapping]] = ..., value: _Optional[_Union[_graph_pb2.Value, _Mapping]] = ..., no_grad: _Optional[bool] = ...) -> None: ...

class SgdOptions(_message.Message):
    __slots__ = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
    LR_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    DAMPENING_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    NESTEROV_FIELD_NUMBER: _ClassVar[int]
    MAXIMIZE_FIELD_NUMBER: _ClassVar[int]
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool
    maximize: bool
    def __init__(self, lr: _Optional[float] = ..., momentum: _Optional[float] = ..., dampening: _Optional[float] = ..., weight_decay: _Optional[float] = ..., nesterov: _Optional[bool] = ..., maximize: _Optional[bool] = ...) -> None: ...

class AdamOptions(_message.Message):
    __slots__ = ("lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay")
    LR_FIELD_NUMBER: _ClassVar[int]
    BETA1_FIELD_NUMBER: _ClassVar[int]
    BETA2_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    AMSGRAD_FIELD_NUMBER: _ClassVar[int]
    MAXIMIZE_FIELD_NUMBER: _ClassVar[int]
    DECOUPLED_WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    amsgrad: bool
    maximize: bool
    decoupled_weight_decay: bool
    def __init__(self, lr: _Optional[float] = ..., beta1: _Optional[float] = ..., beta2: _Optional[float] = ..., eps: _Optional[float] = ..., weight_decay: _Optional[float] = ..., amsgrad: _Optional[bool] = ..., maximize: _Optional[bool] = ..., decoupled_weight_decay: _Optional[bool] = ...) -> None: ...

class RmspropOptions(_message.Message):
    __slots__ = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
    LR_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    CENTERED_FIELD_NUMBER: _ClassVar[int]
    MAXIMIZE_FIELD_NUMBER: _ClassVar[int]
    lr: float
    alpha: float
    eps: float
    weight_decay: float
    momentum: float
    centered: bool
    maximize: bool
    def __init__(self, lr: _Optional[float] = ..., alpha: _Optional[float] = ..., eps: _Optional[float] = ..., weight_decay: _Optional[float] = ..., momentum: _Optional[float] = ..., centered: _Optional[bool] = ..., maximize: _Optional[bool] = ...) -> None: ...

class AdagradOptions(_message.Message):
    __slots__ = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize")
    LR_FIELD_NUMBER: _ClassVar[int]
    LR_DECAY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    INITIAL_ACCUMULATOR_VALUE_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    MAXIMIZE_FIELD_NUMBER: _ClassVar[int]
    lr: float
    lr_decay: float
    weight_decay: float
    initial_accumulator_value: float
    eps: float
    maximize: bool
    def __init__(self, lr: _Optional[float] = ..., lr_decay: _Optional[float] = ..., weight_decay: _Optional[float] = ..., initial_accumulator_value: _Optional[float] = ..., eps: _Optional[float] = ..., maximize: _Optional[bool] = ...) -> None: ...

class SgdParamState(_message.Message):
    __slots__ = ("momentum_buffer",)
    MOMENTUM_BUFFER_FIELD_NUMBER: _ClassVar[int]
    momentum_buffer: _tensor_pb2.Tensor
    def __init__(self, momentum_buffer: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class AdamParamState(_message.Message):
    __slots__ = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    STEP_FIELD_NUMBER: _ClassVar[int]
    EXP_AVG_FIELD_NUMBER: _ClassVar[int]
    EXP_AVG_SQ_FIELD_NUMBER: _ClassVar[int]
    MAX_EXP_AVG_SQ_FIELD_NUMBER: _ClassVar[int]
    step: float
    exp_avg: _tensor_pb2.Tensor
    exp_avg_sq: _tensor_pb2.Tensor
    max_exp_avg_sq: _tensor_pb2.Tensor
    def __init__(self, step: _Optional[float] = ..., exp_avg: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., exp_avg_sq: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., max_exp_avg_sq: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class RmspropParamState(_message.Message):
    __slots__ = ("step", "square_avg", "momentum_buffer", "grad_avg")
    STEP_FIELD_NUMBER: _ClassVar[int]
    SQUARE_AVG_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_BUFFER_FIELD_NUMBER: _ClassVar[int]
    GRAD_AVG_FIELD_NUMBER: _ClassVar[int]
    step: float
    square_avg: _tensor_pb2.Tensor
    momentum_buffer: _tensor_pb2.Tensor
    grad_avg: _tensor_pb2.Tensor
    def __init__(self, step: _Optional[float] = ..., square_avg: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., momentum_buffer: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., grad_avg: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class AdagradParamState(_message.Message):
    __slots__ = ("step", "sum")
    STEP_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    step: float
    sum: _tensor_pb2.Tensor
    def __init__(self, step: _Optional[float] = ..., sum: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ParamState(_message.Message):
    __slots__ = ("param", "sgd", "adam", "rmsprop", "adagrad")
    PARAM_FIELD_NUMBER: _ClassVar[int]
    SGD_FIELD_NUMBER: _ClassVar[int]
    ADAM_FIELD_NUMBER: _ClassVar[int]
    RMSPROP_FIELD_NUMBER: _ClassVar[int]
    ADAGRAD_FIELD_NUMBER: _ClassVar[int]
    param: int
    sgd: SgdParamState
    adam: AdamParamState
    rmsprop: RmspropParamState
    adagrad: AdagradParamState
    def __init__(self, param: _Optional[int] = ..., sgd: _Optional[_Union[SgdParamState, _Mapping]] = ..., adam: _Optional[_Union[AdamParamState, _Mapping]] = ..., rmsprop: _Optional[_Union[RmspropParamState, _Mapping]] = ..., adagrad: _Optional[_Union[AdagradParamState, _Mapping]] = ...) -> None: ...

class CreateOptimizer(_message.Message):
    __slots__ = ("optimizer", "params", "sgd", "adam", "rmsprop", "adagrad", "state")
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SGD_FIELD_NUMBER: _ClassVar[int]
    ADAM_FIELD_NUMBER: _ClassVar[int]
    RMSPROP_FIELD_NUMBER: _ClassVar[int]
    ADAGRAD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    optimizer: int
    params: _containers.RepeatedScalarFieldContainer[int]
    sgd: SgdOptions
    adam: AdamOptions
    rmsprop: RmspropOptions
    adagrad: AdagradOptions
    state: _containers.RepeatedCompositeFieldContainer[ParamState]
    def __init__(self, optimizer: _Optional[int] = ..., params: _Optional[_Iterable[int]] = ..., sgd: _Optional[_Union[SgdOptions, _Mapping]] = ..., adam: _Optional[_Union[AdamOptions, _Mapping]] = ..., rmsprop: _Optional[_Union[RmspropOptions, _Mapping]] = ..., adagrad: _Optional[_Union[AdagradOptions, _Mapping]] = ..., state: _Optional[_Iterable[_Union[ParamState, _Mapping]]] = ...) -> None: ...

class GetOptimizerState(_message.Message):
    __slots__ = ("optimizer",)
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    optimizer: int
    def __init__(self, optimizer: _Optional[int] = ...) -> None: ...

class OptimizerState(_message.Message):
    __slots__ = ("sgd", "adam", "rmsprop", "adagrad", "params", "state")
    SGD_FIELD_NUMBER: _ClassVar[int]
    ADAM_FIELD_NUMBER: _ClassVar[int]
    RMSPROP_FIELD_NUMBER: _ClassVar[int]
    ADAGRAD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    sgd: SgdOptions
    adam: AdamOptions
    rmsprop: RmspropOptions
    adagrad: AdagradOptions
    params: _containers.RepeatedScalarFieldContainer[int]
    state: _containers.RepeatedCompositeFieldContainer[ParamState]
    def __init__(self, sgd: _Optional[_Union[SgdOptions, _Mapping]] = ..., adam: _Optional[_Union[AdamOptions, _Mapping]] = ..., rmsprop: _Optional[_Union[RmspropOptions, _Mapping]] = ..., adagrad: _Optional[_Union[AdagradOptions, _Mapping]] = ..., params: _Optional[_Iterable[int]] = ..., state: _Optional[_Iterable[_Union[ParamState, _Mapping]]] = ...) -> None: ...

class OptimizerStep(_message.Message):
    __slots__ = ("optimizer", "sgd", "adam", "rmsprop", "adagrad")
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    SGD_FIELD_NUMBER: _ClassVar[int]
    ADAM_FIELD_NUMBER: _ClassVar[int]
    RMSPROP_FIELD_NUMBER: _ClassVar[int]
    ADAGRAD_FIELD_NUMBER: _ClassVar[int]
    optimizer: int
    sgd: SgdOptions
    adam: AdamOptions
    rmsprop: RmspropOptions
    adagrad: AdagradOptions
    def __init__(self, optimizer: _Optional[int] = ..., sgd: _Optional[_Union[SgdOptions, _Mapping]] = ..., adam: _Optional[_Union[AdamOptions, _Mapping]] = ..., rmsprop: _Optional[_Union[RmspropOptions, _Mapping]] = ..., adagrad: _Optional[_Union[AdagradOptions, _Mapping]] = ...) -> None: ...

class OptimizerZeroGrad(_message.Message):
    __slots__ = ("optimizer", "set_to_none")
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    SET_TO_NONE_FIELD_NUMBER: _ClassVar[int]
    optimizer: int
    set_to_none: bool
    def __init__(self, optimizer: _Optional[int] = ..., set_to_none: _Optional[bool] = ...) -> None: ...

class ManualSeed(_message.Message):
    __slots__ = ("seed", "generator")
    SEED_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    seed: int
    generator: int
    def __init__(self, seed: _Optional[int] = ..., generator: _Optional[int] = ...) -> None: ...

class CreateGenerator(_message.Message):
    __slots__ = ("generator",)
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    generator: int
    def __init__(self, generator: _Optional[int] = ...) -> None: ...

class GetGenerator(_message.Message):
    __slots__ = ("generator", "state")
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    generator: int
    state: bool
    def __init__(self, generator: _Optional[int] = ..., state: _Optional[bool] = ...) -> None: ...

class GeneratorInfo(_message.Message):
    __slots__ = ("initial_seed", "state")
    INITIAL_SEED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    initial_seed: int
    state: bytes
    def __init__(self, initial_seed: _Optional[int] = ..., state: _Optional[bytes] = ...) -> None: ...

class SetGeneratorState(_message.Message):
    __slots__ = ("generator", "state")
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    generator: int
    state: bytes
    def __init__(self, generator: _Optional[int] = ..., state: _Optional[bytes] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("handles",)
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    handles: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, handles: _Optional[_Iterable[int]] = ...) -> None: ...

class Fetch(_message.Message):
    __slots__ = ("handle", "value", "grad", "graph", "repr", "grad_repr")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    GRAD_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    REPR_FIELD_NUMBER: _ClassVar[int]
    GRAD_REPR_FIELD_NUMBER: _ClassVar[int]
    handle: int
    value: bool
    grad: bool
    graph: bool
    repr: bool
    grad_repr: bool
    def __init__(self, handle: _Optional[int] = ..., value: _Optional[bool] = ..., grad: _Optional[bool] = ..., graph: _Optional[bool] = ..., repr: _Optional[bool] = ..., grad_repr: _Optional[bool] = ...) -> None: ...

class Instruction(_message.Message):
    __slots__ = ("create_tensor", "apply_op", "apply_inplace", "backward", "grad", "zero_grad", "set_grad", "get_grad", "set_requires_grad", "detach", "detach_inplace", "retain_grad", "create_optimizer", "optimizer_step", "optimizer_zero_grad", "manual_seed", "release", "fetch", "index", "index_put", "get_optimizer_state", "apply_function", "claim_gradients", "resume_backward", "abort_backward", "register_hook", "remove_hook", "tape", "create_generator", "get_generator", "set_generator_state", "get_saved", "pack_saved", "get_base", "set_data")
    CREATE_TENSOR_FIELD_NUMBER: _ClassVar[int]
    APPLY_OP_FIELD_NUMBER: _ClassVar[int]
    APPLY_INPLACE_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_FIELD_NUMBER: _ClassVar[int]
    GRAD_FIELD_NUMBER: _ClassVar[int]
    ZERO_GRAD_FIELD_NUMBER: _ClassVar[int]
    SET_GRAD_FIELD_NUMBER: _ClassVar[int]
    GET_GRAD_FIELD_NUMBER: _ClassVar[int]
    SET_REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    DETACH_INPLACE_FIELD_NUMBER: _ClassVar[int]
    RETAIN_GRAD_FIELD_NUMBER: _ClassVar[int]
    CREATE_OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_STEP_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_ZERO_GRAD_FIELD_NUMBER: _ClassVar[int]
    MANUAL_SEED_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    FETCH_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    INDEX_PUT_FIELD_NUMBER: _ClassVar[int]
    GET_OPTIMIZER_STATE_FIELD_NUMBER: _ClassVar[int]
    APPLY_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    CLAIM_GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    RESUME_BACKWARD_FIELD_NUMBER: _ClassVar[int]
    ABORT_BACKWARD_FIELD_NUMBER: _ClassVar[int]
    REGISTER_HOOK_FIELD_NUMBER: _ClassVar[int]
    REMOVE_HOOK_FIELD_NUMBER: _ClassVar[int]
    TAPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_GENERATOR_FIELD_NUMBER: _ClassVar[int]
    GET_GENERATOR_FIELD_NUMBER: _ClassVar[int]
    SET_GENERATOR_STATE_FIELD_NUMBER: _ClassVar[int]
    GET_SAVED_FIELD_NUMBER: _ClassVar[int]
    PACK_SAVED_FIELD_NUMBER: _ClassVar[int]
    GET_BASE_FIELD_NUMBER: _ClassVar[int]
    SET_DATA_FIELD_NUMBER: _ClassVar[int]
    create_tensor: CreateTensor
    apply_op: ApplyOp
    apply_inplace: ApplyInplace
    backward: Backward
    grad: Grad
    zero_grad: ZeroGrad
    set_grad: SetGrad
    get_grad: GetGrad
    set_requires_grad: SetRequiresGrad
    detach: Detach
    detach_inplace: DetachInplace
    retain_grad: RetainGrad
    create_optimizer: CreateOptimizer
    optimizer_step: OptimizerStep
    optimizer_zero_grad: OptimizerZeroGrad
    manual_seed: ManualSeed
    release: Release
    fetch: Fetch
    index: Index
    index_put: IndexPut
    get_optimizer_state: GetOptimizerState
    apply_function: ApplyFunction
    claim_gradients: ClaimGradients
    resume_backward: ResumeBackward
    abort_backward: AbortBackward
    register_hook: RegisterHook
    remove_hook: RemoveHook
    tape: Tape
    create_generator: CreateGenerator
    get_generator: GetGenerator
    set_generator_state: SetGeneratorState
    get_saved: GetSaved
    pack_saved: PackSaved
    get_base: GetBase
    set_data: SetData
    def __init__(self, create_tensor: _Optional[_Union[CreateTensor, _Mapping]] = ..., apply_op: _Optional[_Union[ApplyOp, _Mapping]] = ..., apply_inplace: _Optional[_Union[ApplyInplace, _Mapping]] = ..., backward: _Optional[_Union[Backward, _Mapping]] = ..., grad: _Optional[_Union[Grad, _Mapping]] = ..., zero_grad: _Optional[_Union[ZeroGrad, _Mapping]] = ..., set_grad: _Optional[_Union[SetGrad, _Mapping]] = ..., get_grad: _Optional[_Union[GetGrad, _Mapping]] = ..., set_requires_grad: _Optional[_Union[SetRequiresGrad, _Mapping]] = ..., detach: _Optional[_Union[Detach, _Mapping]] = ..., detach_inplace: _Optional[_Union[DetachInplace, _Mapping]] = ..., retain_grad: _Optional[_Union[RetainGrad, _Mapping]] = ..., create_optimizer: _Optional[_Union[CreateOptimizer, _Mapping]] = ..., optimizer_step: _Optional[_Union[OptimizerStep, _Mapping]] = ..., optimizer_zero_grad: _Optional[_Union[OptimizerZeroGrad, _Mapping]] = ..., manual_seed: _Optional[_Union[ManualSeed, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., fetch: _Optional[_Union[Fetch, _Mapping]] = ..., index: _Optional[_Union[Index, _Mapping]] = ..., index_put: _Optional[_Union[IndexPut, _Mapping]] = ..., get_optimizer_state: _Optional[_Union[GetOptimizerState, _Mapping]] = ..., apply_function: _Optional[_Union[ApplyFunction, _Mapping]] = ..., claim_gradients: _Optional[_Union[ClaimGradients, _Mapping]] = ..., resume_backward: _Optional[_Union[ResumeBackward, _Mapping]] = ..., abort_backward: _Optional[_Union[AbortBackward, _Mapping]] = ..., register_hook: _Optional[_Union[RegisterHook, _Mapping]] = ..., remove_hook: _Optional[_Union[RemoveHook, _Mapping]] = ..., tape: _Optional[_Union[Tape, _Mapping]] = ..., create_generator: _Optional[_Union[CreateGenerator, _Mapping]] = ..., get_generator: _Optional[_Union[GetGenerator, _Mapping]] = ..., set_generator_state: _Optional[_Union[SetGeneratorState, _Mapping]] = ..., get_saved: _Optional[_Union[GetSaved, _Mapping]] = ..., pack_saved: _Optional[_Union[PackSaved, _Mapping]] = ..., get_base: _Optional[_Union[GetBase, _Mapping]] = ..., set_data: _Optional[_Union[SetData, _Mapping]] = ...) -> None: ...

class GetSaved(_message.Message):
    __slots__ = ("handle", "name", "result")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    handle: int
    name: str
    result: int
    def __init__(self, handle: _Optional[int] = ..., name: _Optional[str] = ..., result: _Optional[int] = ...) -> None: ...

class PackSaved(_message.Message):
    __slots__ = ("handle", "hook", "results")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    handle: int
    hook: int
    results: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, handle: _Optional[int] = ..., hook: _Optional[int] = ..., results: _Optional[_Iterable[int]] = ...) -> None: ...

class PackedTensors(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[SavedValue]
    def __init__(self, tensors: _Optional[_Iterable[_Union[SavedValue, _Mapping]]] = ...) -> None: ...

class GetBase(_message.Message):
    __slots__ = ("handle", "result")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    handle: int
    result: int
    def __init__(self, handle: _Optional[int] = ..., result: _Optional[int] = ...) -> None: ...

class SetData(_message.Message):
    __slots__ = ("handle", "value")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    handle: int
    value: int
    def __init__(self, handle: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...

class SavedValue(_message.Message):
    __slots__ = ("none", "same_as", "bound", "number")
    NONE_FIELD_NUMBER: _ClassVar[int]
    SAME_AS_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    none: _tensor_pb2.NoneValue
    same_as: int
    bound: TensorInfo
    number: _graph_pb2.AttrValue
    def __init__(self, none: _Optional[_Union[_tensor_pb2.NoneValue, _Mapping]] = ..., same_as: _Optional[int] = ..., bound: _Optional[_Union[TensorInfo, _Mapping]] = ..., number: _Optional[_Union[_graph_pb2.AttrValue, _Mapping]] = ...) -> None: ...

class ApplyFunction(_message.Message):
    __slots__ = ("name", "node", "args", "outputs", "results", "non_differentiable", "dirty", "saved", "materialize_grads", "no_grad")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NON_DIFFERENTIABLE_FIELD_NUMBER: _ClassVar[int]
    DIRTY_FIELD_NUMBER: _ClassVar[int]
    SAVED_FIELD_NUMBER: _ClassVar[int]
    MATERIALIZE_GRADS_FIELD_NUMBER: _ClassVar[int]
    NO_GRAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    node: int
    args: _containers.RepeatedCompositeFieldContainer[_graph_pb2.Value]
    outputs: _containers.RepeatedScalarFieldContainer[int]
    results: _containers.RepeatedScalarFieldContainer[int]
    non_differentiable: _containers.RepeatedScalarFieldContainer[int]
    dirty: _containers.RepeatedScalarFieldContainer[int]
    saved: _containers.RepeatedScalarFieldContainer[int]
    materialize_grads: bool
    no_grad: bool
    def __init__(self, name: _Optional[str] = ..., node: _Optional[int] = ..., args: _Optional[_Iterable[_Union[_graph_pb2.Value, _Mapping]]] = ..., outputs: _Optional[_Iterable[int]] = ..., results: _Optional[_Iterable[int]] = ..., non_differentiable: _Optional[_Iterable[int]] = ..., dirty: _Optional[_Iterable[int]] = ..., saved: _Optional[_Iterable[int]] = ..., materialize_grads: _Optional[bool] = ..., no_grad: _Optional[bool] = ...) -> None: ...

class ClaimGradients(_message.Message):
    __slots__ = ("node", "handles", "saved", "hook")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    SAVED_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    node: int
    handles: _containers.RepeatedScalarFieldContainer[int]
    saved: _containers.RepeatedScalarFieldContainer[int]
    hook: int
    def __init__(self, node: _Optional[int] = ..., handles: _Optional[_Iterable[int]] = ..., saved: _Optional[_Iterable[int]] = ..., hook: _Optional[int] = ...) -> None: ...

class ResumeBackward(_message.Message):
    __slots__ = ("node", "grads", "once_differentiable", "hook")
    NODE_FIELD_NUMBER: _ClassVar[int]
    GRADS_FIELD_NUMBER: _ClassVar[int]
    ONCE_DIFFERENTIABLE_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    node: int
    grads: _containers.RepeatedCompositeFieldContainer[_graph_pb2.Value]
    once_differentiable: bool
    hook: int
    def __init__(self, node: _Optional[int] = ..., grads: _Optional[_Iterable[_Union[_graph_pb2.Value, _Mapping]]] = ..., once_differentiable: _Optional[bool] = ..., hook: _Optional[int] = ...) -> None: ...

class AbortBackward(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterHook(_message.Message):
    __slots__ = ("handle", "hook", "post_accumulate", "name", "node_pre", "node_post")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    POST_ACCUMULATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_PRE_FIELD_NUMBER: _ClassVar[int]
    NODE_POST_FIELD_NUMBER: _ClassVar[int]
    handle: int
    hook: int
    post_accumulate: bool
    name: str
    node_pre: bool
    node_post: bool
    def __init__(self, handle: _Optional[int] = ..., hook: _Optional[int] = ..., post_accumulate: _Optional[bool] = ..., name: _Optional[str] = ..., node_pre: _Optional[bool] = ..., node_post: _Optional[bool] = ...) -> None: ...

class RemoveHook(_message.Message):
    __slots__ = ("hook",)
    HOOK_FIELD_NUMBER: _ClassVar[int]
    hook: int
    def __init__(self, hook: _Optional[int] = ...) -> None: ...

class BackwardSuspended(_message.Message):
    __slots__ = ("node", "grads", "saved_errors", "create_graph", "saved", "needs_input_grad", "hook", "grad_outputs")
    NODE_FIELD_NUMBER: _ClassVar[int]
    GRADS_FIELD_NUMBER: _ClassVar[int]
    SAVED_ERRORS_FIELD_NUMBER: _ClassVar[int]
    CREATE_GRAPH_FIELD_NUMBER: _ClassVar[int]
    SAVED_FIELD_NUMBER: _ClassVar[int]
    NEEDS_INPUT_GRAD_FIELD_NUMBER: _ClassVar[int]
    HOOK_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    node: int
    grads: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    saved_errors: _containers.RepeatedScalarFieldContainer[str]
    create_graph: bool
    saved: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    needs_input_grad: _containers.RepeatedScalarFieldContainer[bool]
    hook: int
    grad_outputs: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    def __init__(self, node: _Optional[int] = ..., grads: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., saved_errors: _Optional[_Iterable[str]] = ..., create_graph: _Optional[bool] = ..., saved: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., needs_input_grad: _Optional[_Iterable[bool]] = ..., hook: _Optional[int] = ..., grad_outputs: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ...) -> None: ...

class TensorInfo(_message.Message):
    __slots__ = ("handle", "dtype", "shape", "requires_grad", "is_leaf", "grad_fn", "version", "non_contiguous", "strides", "storage_offset")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_GRAD_FIELD_NUMBER: _ClassVar[int]
    IS_LEAF_FIELD_NUMBER: _ClassVar[int]
    GRAD_FN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NON_CONTIGUOUS_FIELD_NUMBER: _ClassVar[int]
    STRIDES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    handle: int
    dtype: _tensor_pb2.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    requires_grad: bool
    is_leaf: bool
    grad_fn: str
    version: int
    non_contiguous: bool
    strides: _containers.RepeatedScalarFieldContainer[int]
    storage_offset: int
    def __init__(self, handle: _Optional[int] = ..., dtype: _Optional[_Union[_tensor_pb2.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., requires_grad: _Optional[bool] = ..., is_leaf: _Optional[bool] = ..., grad_fn: _Optional[str] = ..., version: _Optional[int] = ..., non_contiguous: _Optional[bool] = ..., strides: _Optional[_Iterable[int]] = ..., storage_offset: _Optional[int] = ...) -> None: ...

class AutogradNode(_message.Message):
    __slots__ = ("id", "name", "leaf_handle", "leaf_shape", "next")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEAF_HANDLE_FIELD_NUMBER: _ClassVar[int]
    LEAF_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    leaf_handle: int
    leaf_shape: _containers.RepeatedScalarFieldContainer[int]
    next: _containers.RepeatedCompositeFieldContainer[AutogradNext]
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., leaf_handle: _Optional[int] = ..., leaf_shape: _Optional[_Iterable[int]] = ..., next: _Optional[_Iterable[_Union[AutogradNext, _Mapping]]] = ...) -> None: ...

class AutogradNext(_message.Message):
    __slots__ = ("node", "output_nr")
    NODE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NR_FIELD_NUMBER: _ClassVar[int]
    node: int
    output_nr: int
    def __init__(self, node: _Optional[int] = ..., output_nr: _Optional[int] = ...) -> None: ...

class AutogradEdge(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: int
    target: int
    def __init__(self, source: _Optional[int] = ..., target: _Optional[int] = ...) -> None: ...

class AutogradGraph(_message.Message):
    __slots__ = ("nodes", "edges")
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[AutogradNode]
    edges: _containers.RepeatedCompositeFieldContainer[AutogradEdge]
    def __init__(self, nodes: _Optional[_Iterable[_Union[AutogradNode, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[AutogradEdge, _Mapping]]] = ...) -> None: ...

class FetchResult(_message.Message):
    __slots__ = ("info", "value", "grad", "graph", "repr", "grad_repr", "omitted")
    INFO_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    GRAD_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    REPR_FIELD_NUMBER: _ClassVar[int]
    GRAD_REPR_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FIELD_NUMBER: _ClassVar[int]
    info: TensorInfo
    value: _tensor_pb2.Tensor
    grad: _tensor_pb2.MaybeTensor
    graph: AutogradGraph
    repr: str
    grad_repr: str
    omitted: FetchOmitted
    def __init__(self, info: _Optional[_Union[TensorInfo, _Mapping]] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., grad: _Optional[_Union[_tensor_pb2.MaybeTensor, _Mapping]] = ..., graph: _Optional[_Union[AutogradGraph, _Mapping]] = ..., repr: _Optional[str] = ..., grad_repr: _Optional[str] = ..., omitted: _Optional[_Union[FetchOmitted, _Mapping]] = ...) -> None: ...

class FetchOmitted(_message.Message):
    __slots__ = ("bytes", "max_message_bytes")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    max_message_bytes: int
    def __init__(self, bytes: _Optional[int] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class HandlesResult(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ...) -> None: ...

class InstructionResult(_message.Message):
    __slots__ = ("done", "handles", "fetch", "optimizer_state", "suspended", "tape", "generator", "saved", "packed")
    DONE_FIELD_NUMBER: _ClassVar[int]
    HANDLES_FIELD_NUMBER: _ClassVar[int]
    FETCH_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_STATE_FIELD_NUMBER: _ClassVar[int]
    SUSPENDED_FIELD_NUMBER: _ClassVar[int]
    TAPE_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    SAVED_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    done: _tensor_pb2.NoneValue
    handles: HandlesResult
    fetch: FetchResult
    optimizer_state: OptimizerState
    suspended: BackwardSuspended
    tape: TapeResult
    generator: GeneratorInfo
    saved: SavedValue
    packed: PackedTensors
    def __init__(self, done: _Optional[_Union[_tensor_pb2.NoneValue, _Mapping]] = ..., handles: _Optional[_Union[HandlesResult, _Mapping]] = ..., fetch: _Optional[_Union[FetchResult, _Mapping]] = ..., optimizer_state: _Optional[_Union[OptimizerState, _Mapping]] = ..., suspended: _Optional[_Union[BackwardSuspended, _Mapping]] = ..., tape: _Optional[_Union[TapeResult, _Mapping]] = ..., generator: _Optional[_Union[GeneratorInfo, _Mapping]] = ..., saved: _Optional[_Union[SavedValue, _Mapping]] = ..., packed: _Optional[_Union[PackedTensors, _Mapping]] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("session_id", "request_id", "instructions", "after_request_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    AFTER_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    request_id: str
    instructions: _containers.RepeatedCompositeFieldContainer[Instruction]
    after_request_id: str
    def __init__(self, session_id: _Optional[str] = ..., request_id: _Optional[str] = ..., instructions: _Optional[_Iterable[_Union[Instruction, _Mapping]]] = ..., after_request_id: _Optional[str] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("results", "replayed", "dropped_functions")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[InstructionResult]
    replayed: bool
    dropped_functions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, results: _Optional[_Iterable[_Union[InstructionResult, _Mapping]]] = ..., replayed: _Optional[bool] = ..., dropped_functions: _Optional[_Iterable[int]] = ...) -> None: ...
