"""Generated gRPC/protobuf code for the gradserve.v1 API (see scripts/gen_protos.py).

The constants below are the parts of the wire contract that a .proto file cannot express; the
server and the client both import them from here, so the two sides cannot drift apart.
"""

#: Largest message either side sends or accepts by default (the server's --max-message-bytes).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: Metadata key carrying the session id on every session call (load balancers route on it).
SESSION_ID_METADATA = "x-session-id"

#: Metadata key of the bearer token: value "Bearer <token>".
AUTHORIZATION_METADATA = "authorization"

#: Trailing metadata: the built-in exception type of an error ("RuntimeError", "ValueError",
#: "TypeError", "IndexError", ...), so a client re-raises the same type with the status message.
ERROR_TYPE_METADATA = "gradserve-error-type"

#: Trailing metadata: the server-side error class name ("GraphFreedError", "NotFoundError", ...;
#: service.proto lists them, docs/errors.md gives each one's rich-error reason).
ERROR_CLASS_METADATA = "gradserve-error-class"

#: Trailing metadata: 0-based index of the batch instruction that failed.
FAILED_INSTRUCTION_METADATA = "gradserve-failed-instruction"

#: Trailing metadata: 0-based index, inside the failing instruction (a Tape), of the op that
#: failed.
FAILED_TAPE_OP_METADATA = "gradserve-failed-tape-op"

#: The ListOpsResponse.features name of the instruction tape (Instruction.tape).
TAPE_FEATURE = "tape"

#: The ListOpsResponse.features name of op attributes on the tape (Tape.attrs, the ATTRS flag;
#: docs/wire.md): a server without it refuses an ATTRS-flagged op ("unknown flags").
TAPE_ATTRS_FEATURE = "tape_attrs"

#: The ListOpsResponse.features name of session instructions on the tape (the INSTRUCTION flag:
#: `backward`, `optimizer_step`, `optimizer_zero_grad`; docs/wire.md): a server without it
#: refuses an INSTRUCTION-flagged op ("unknown flags").
TAPE_INSTRUCTIONS_FEATURE = "tape_instructions"

#: The ListOpsResponse.features name of ApplyOp.omit_info: the server leaves an op's TensorInfos
#: out of its reply on request, and its ops' results are what `gradserve.surface.meta` infers
#: (a client describes them itself; docs/wire.md).
OMIT_INFO_FEATURE = "omit_info"

#: The ListOpsResponse.features name of new hyperparameters in OptimizerStep (a server without
#: it ignores them: a client must not send them there).
STEP_HYPERPARAMETERS_FEATURE = "optimizer_step_hyperparameters"

#: The ListOpsResponse.features name of generator handles (CreateGenerator, GetGenerator,
#: SetGeneratorState, ManualSeed/ApplyOp/ApplyInplace.generator).
GENERATOR_FEATURE = "generators"

#: The ListOpsResponse.features name of Fetch.grad_repr (a gradient's printed form without the
#: tensor's own; a server without it ignores the field: a client must not rely on it there).
FETCH_GRAD_REPR_FEATURE = "fetch_grad_repr"

#: The ListOpsResponse.features name of GetSaved (a grad_fn's `_saved_*` attributes).
GET_SAVED_FEATURE = "get_saved"

#: The ListOpsResponse.features name of PackSaved (saved-tensor hooks through a session).
PACK_SAVED_FEATURE = "pack_saved"

#: The ListOpsResponse.features name of GetBase (`tensor._base`).
GET_BASE_FEATURE = "get_base"

#: The ListOpsResponse.features name of SetData (`x.data = y` with another shape or dtype).
SET_DATA_FEATURE = "set_data"

#: The ListOpsResponse.features name of Backward.more_tensors (several tensors differentiated
#: in one backward pass, torch.autograd.backward([a, b], ...)).
BACKWARD_ROOTS_FEATURE = "backward_roots"

#: The ListOpsResponse.features name of BatchRequest.after_request_id: a batch sent before the
#: previous one's reply came runs only after it, and only if it succeeded (docs/wire.md).
BATCH_AFTER_FEATURE = "batch_after"

#: The ListOpsResponse.features name a server lists when it computes float32 LSTM layers as
#: torch's oneDNN AVX-512 kernel (op mkldnn_rnn_layer): nn.LSTM then calls that op.
ONEDNN_LSTM_FEATURE = "onednn_lstm"

#: Trailing metadata: id of the graph node that failed (RunGraph).
FAILED_NODE_METADATA = "gradserve-failed-node"

#: Wire protocol version this code speaks (ListOpsResponse.protocol_version). Bump it when a
#: change needs both sides to know of it, and say so in CHANGELOG.md.
PROTOCOL_VERSION = 1

#: The gRPC service name, for health checks ("" checks the whole server).
SERVICE_NAME = "gradserve.v1.AutogradService"
