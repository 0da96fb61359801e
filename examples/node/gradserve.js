// A small Node.js client of gradserve's wire API, written from protos/ and the README's wire
// section only: @grpc/grpc-js for the calls, @grpc/proto-loader for the messages, protobufjs
// (proto-loader's own dependency) to decode gRPC's rich error details.
'use strict';

const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
const LOADER_OPTIONS = {
  keepCase: true, // field names as in the .proto files (session_id, not sessionId)
  longs: String, // int64/uint64 arrive as decimal strings (JS numbers lose precision above 2^53)
  enums: String, // 'DTYPE_FLOAT32'
  defaults: true,
  oneofs: true, // a virtual field per oneof names the kind that is set
  includeDirs: [PROTOS],
};

function load(files) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(files, LOADER_OPTIONS));
}

const api = load(['gradserve/v1/service.proto', 'grpc/health/v1/health.proto']);

/** Stubs for one server: {service, health, close()}. */
function connect(target) {
  const creds = grpc.credentials.createInsecure();
  const service = new api.gradserve.v1.AutogradService(target, creds);
  const health = new api.grpc.health.v1.Health(target, creds);
  return { service, health, close: () => { service.close(); health.close(); } };
}

/** Promise of a unary call; rejects with grpc-js's ServiceError (code, details, metadata). */
function call(stub, method, request, metadata = new grpc.Metadata(), deadlineSeconds = 10) {
  const deadline = new Date(Date.now() + deadlineSeconds * 1000);
  return new Promise((resolve, reject) => {
    stub[method](request, metadata, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

// --- tensors ------------------------------------------------------------------------------------

const ARRAYS = {
  DTYPE_FLOAT32: Float32Array, DTYPE_FLOAT64: Float64Array, DTYPE_INT32: Int32Array,
  DTYPE_INT64: BigInt64Array, DTYPE_BOOL: Uint8Array,
};

/** A float32 Tensor message from a number or a flat array (shape [] for a number). */
function float32(values, shape) {
  const data = Float32Array.from(Array.isArray(values) ? values : [values]);
  return {
    dtype: 'DTYPE_FLOAT32',
    shape: shape ?? (Array.isArray(values) ? [values.length] : []),
    raw: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
  };
}

/**
 * The elements of a Tensor message as a typed array.
 *
 * `raw` arrives as a Node Buffer that is often a slice of a larger pooled buffer at an arbitrary
 * byteOffset, and `new Float32Array(raw.buffer, raw.byteOffset, n)` throws a RangeError unless
 * that offset is a multiple of 4 (8 for float64/int64). Copying into a fresh Uint8Array gives a
 * buffer of its own starting at offset 0, which every element size divides. The bytes are
 * little-endian: on a big-endian host read them with a DataView instead.
 */
function decode(tensor) {
  const Kind = ARRAYS[tensor.dtype];
  if (!Kind) throw new Error(`unknown dtype ${tensor.dtype}`);
  if (tensor.data !== 'raw') { // a typed list (float_values, ...): already numbers
    return Kind.from(tensor[tensor.data].values.map((v) => (Kind === BigInt64Array ? BigInt(v) : v)));
  }
  const bytes = new Uint8Array(tensor.raw); // copies: aligned, offset 0
  const n = bytes.byteLength / Kind.BYTES_PER_ELEMENT;
  if (os.endianness() === 'LE') return new Kind(bytes.buffer, 0, n);
  const view = new DataView(bytes.buffer);
  const getter = {
    DTYPE_FLOAT32: (i) => view.getFloat32(4 * i, true), DTYPE_FLOAT64: (i) => view.getFloat64(8 * i, true),
    DTYPE_INT32: (i) => view.getInt32(4 * i, true), DTYPE_INT64: (i) => view.getBigInt64(8 * i, true),
    DTYPE_BOOL: (i) => view.getUint8(i),
  }[tensor.dtype];
  return Kind.from({ length: n }, (_, i) => getter(i));
}

// --- rich errors ----------------------------------------------------------------------------------

const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/')
  ? target // protobufjs has the well-known types built in
  : path.join(PROTOS, target));
rpcRoot.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
const Status = rpcRoot.lookupType('google.rpc.Status');

/**
 * The google.rpc.Status of a failed call (its `grpc-status-details-bin` trailer), with each detail
 * unpacked: {code, message, details: [{type: 'ErrorInfo', reason, domain, metadata}, ...]}, or
 * null when the server sent none.
 */
function richError(err) {
  const [bin] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!bin) return null;
  const status = Status.decode(bin);
  const details = status.details.map((any) => {
    const type = any.type_url.slice(any.type_url.lastIndexOf('/') + 1); // google.rpc.ErrorInfo
    const decoded = rpcRoot.lookupType(type).toObject(rpcRoot.lookupType(type).decode(any.value),
      { longs: String, defaults: true });
    return { type: type.replace('google.rpc.', ''), ...decoded };
  });
  return { code: status.code, message: status.message, details };
}

// --- sessions -------------------------------------------------------------------------------------

/** A session: `run(instructions)` executes one batch; handles are numbered by `handle()`. */
class Session {
  constructor(stubs, id) {
    this.stubs = stubs;
    this.id = id;
    this.metadata = new grpc.Metadata();
    this.metadata.set('x-session-id', id);
    this.next = 1;
  }

  static async create(stubs) {
    const reply = await call(stubs.service, 'CreateSession', {});
    return new Session(stubs, reply.session_id);
  }

  handle() { return this.next++; }

  async run(instructions) {
    const reply = await call(this.stubs.service, 'ExecuteBatch',
      { session_id: this.id, instructions }, this.metadata);
    return reply.results;
  }

  close() {
    return call(this.stubs.service, 'CloseSession', { session_id: this.id }, this.metadata);
  }
}

/** Op inputs: a number is a float scalar, {handle} a session tensor. */
function value(v) {
  return typeof v === 'number' ? { float_scalar: v } : v;
}

function op(name, inputs, outputs, attrs = {}) {
  return { apply_op: { op: name, inputs: inputs.map(value), outputs, attrs } };
}

module.exports = {
  grpc, connect, call, float32, decode, richError, Session, op, value,
};
