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

const definition = protoLoader.loadSync(['gradserve/v1/service.proto', 'grpc/health/v1/health.proto'],
  LOADER_OPTIONS);
const api = grpc.loadPackageDefinition(definition);
/** DType enum numbers by name ({DTYPE_FLOAT32: 1, ...}): a tape's dtype attributes carry numbers. */
const DTYPES = Object.fromEntries(definition['gradserve.v1.DType'].type.value.map((v) => [v.name, v.number]));

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
  DTYPE_INT64: BigInt64Array, DTYPE_BOOL: Uint8Array, DTYPE_UINT8: Uint8Array, DTYPE_INT8: Int8Array,
  DTYPE_INT16: Int16Array,
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
    DTYPE_BOOL: (i) => view.getUint8(i), DTYPE_UINT8: (i) => view.getUint8(i),
    DTYPE_INT8: (i) => view.getInt8(i), DTYPE_INT16: (i) => view.getInt16(2 * i, true),
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

/** The trailing metadata of a failed ExecuteBatch: which instruction failed, and which op of a tape. */
const FAILED_INSTRUCTION = 'gradserve-failed-instruction';
const FAILED_TAPE_OP = 'gradserve-failed-tape-op';

/** A metadata entry as a number, or undefined when the server did not send it. */
function metadataIndex(err, key) {
  const [v] = err.metadata ? err.metadata.get(key) : [];
  return v === undefined ? undefined : Number(v);
}

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

  /**
   * Execute one batch; resolves with its InstructionResults. A failed batch rejects with grpc-js's
   * ServiceError plus `instruction` (the 0-based index of the instruction that failed) and
   * `tapeOp` (for a tape, the failing op's 0-based index in it), each undefined when not sent.
   */
  async run(instructions) {
    try {
      const reply = await call(this.stubs.service, 'ExecuteBatch',
        { session_id: this.id, instructions }, this.metadata);
      return reply.results;
    } catch (err) {
      err.instruction = metadataIndex(err, FAILED_INSTRUCTION);
      err.tapeOp = metadataIndex(err, FAILED_TAPE_OP);
      throw err;
    }
  }

  /** A new tape recorder whose ops bind handles of this session (see `Tape`). */
  tape() { return new Tape(this); }

  /** The session's state (tensor count, bytes held, limits): one round trip. */
  describe() {
    return call(this.stubs.service, 'DescribeSession', { session_id: this.id }, this.metadata);
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

/** The optional wire features a server lists (ListOpsResponse.features), e.g. 'tape', 'tape_attrs'. */
async function features(stubs) {
  return new Set((await call(stubs.service, 'ListOps', {})).features);
}

// --- the instruction tape (docs/wire.md) ---------------------------------------------------------

/** An int64 constant: `int(3)` as an op input or attribute (a plain JS number input is a float). */
const int = (n) => ({ int: n });
/** A float constant: `float(2)` as an attribute (a JS number without a fraction is sent as an int). */
const float = (x) => ({ float: x });
/** A dtype attribute: `dtype('DTYPE_FLOAT64')`. */
const dtype = (name) => ({ dtype: name });

// Header flags (bits 32-36 of an op's header word, here as bits 0-4 of its high half).
const NO_GRAD = 1;
const DESCRIBE = 2;
const VALUE = 4;
const ATTRS = 8;
const INSTRUCTION = 16;
// Session instructions a tape carries (flag INSTRUCTION): their input counts (the first required).
const INSTRUCTIONS = { backward: 3, optimizer_step: 1, optimizer_zero_grad: 2 };
// Input kinds (an input word's low 3 bits) and attribute kinds (an attribute word's low 3 bits).
const IN = { handle: 0, float: 1, int: 2, bool: 3, none: 4, constant: 5 };
const AT = { ints: 0, float: 1, int: 2, bool: 3, none: 4, string: 5, dtype: 6 };
const TABLE_LIMIT = 262144; // words of code or attrs, entries of floats, ints, constants, strings
const NAME_LIMIT = 4096; // entries of ops and attr_names
const TWO32 = 2 ** 32;

/**
 * A growable array of little-endian 64-bit words, written as two 32-bit halves so that no word
 * needs a BigInt (JS numbers are exact to 2^53; every field the tape packs is narrower).
 */
class Words {
  constructor(what) {
    this.what = what;
    this.view = new DataView(new ArrayBuffer(512));
    this.length = 0;
  }

  /** Append the word `hi * 2^32 + lo` (0 <= lo, hi < 2^32); returns its index. */
  push(lo, hi) {
    if (this.length >= TABLE_LIMIT) throw new RangeError(`a tape holds at most ${TABLE_LIMIT} ${this.what}`);
    const at = this.length * 8;
    if (at === this.view.byteLength) {
      const grown = new Uint8Array(at * 2);
      grown.set(new Uint8Array(this.view.buffer));
      this.view = new DataView(grown.buffer);
    }
    this.view.setUint32(at, lo, true);
    this.view.setUint32(at + 4, hi, true);
    return this.length++;
  }

  /** Append a float64 (floats table); returns its index. */
  pushFloat(x) {
    const i = this.push(0, 0);
    this.view.setFloat64(i * 8, x, true);
    return i;
  }

  /** Append an int64 (ints table) given as a safe-integer number or a BigInt; returns its index. */
  pushInt(n) {
    if (typeof n === 'bigint') {
      if (n !== BigInt.asIntN(64, n)) throw new RangeError(`int ${n} is outside int64`);
      const i = this.push(0, 0);
      this.view.setBigInt64(i * 8, n, true);
      return i;
    }
    if (!Number.isSafeInteger(n)) throw new RangeError(`int ${n} is not a safe integer (use a BigInt)`);
    const hi = Math.floor(n / TWO32); // two's complement: floor works for negatives too
    return this.push(n - hi * TWO32, hi >>> 0);
  }

  /** Rewrite the low half of word `i`. */
  setLow(i, lo) { this.view.setUint32(i * 8, lo, true); }

  /** The words as bytes (a Buffer over a copy, for the message). */
  bytes() { return Buffer.from(this.view.buffer.slice(0, this.length * 8)); }
}

/** An index into a table of unique strings (ops, attr_names, strings), adding the string when new. */
function intern(table, index, name, limit, what) {
  let i = index.get(name);
  if (i === undefined) {
    if (table.length >= limit) throw new RangeError(`a tape holds at most ${limit} ${what}`);
    i = table.push(name) - 1;
    index.set(name, i);
  }
  return i;
}

/**
 * A tape recorder: ops appended as packed words (docs/wire.md, "The instruction tape"), sent as
 * one `Instruction.tape` of a session batch. Each `op()` allocates its output handles in the
 * session and returns them at once, so later ops (and the batch's other instructions) can use
 * them before anything is sent:
 *
 *     const tape = session.tape();
 *     const y = tape.op('mul', [x, 1.5]);                       // x: {handle}, 1.5 a float input
 *     const s = tape.op('sum', [y], { attrs: { dim: 1, keepdim: true }, value: true });
 *     const run = await tape.run();
 *     run.value(s); // Float32Array of s's elements
 *
 * Needs a server listing feature 'tape' (and 'tape_attrs' for ops with attributes, and
 * 'tape_instructions' for `call()`): see `features()`. A tape is sent once; record the next
 * batch's ops on a new one.
 */
class Tape {
  /** @param {Session} session the session whose handles the ops bind */
  constructor(session) {
    this.session = session;
    this.ops = [];
    this.opIndex = new Map();
    this.attrNames = [];
    this.attrNameIndex = new Map();
    this.strings = [];
    this.stringIndex = new Map();
    this.constants = [];
    this.code = new Words('code words');
    this.floats = new Words('floats');
    this.ints = new Words('ints');
    this.attrs = new Words('attribute words');
    this.listInts = 0; // ints in the attributes' int lists, counted per use (<= TABLE_LIMIT)
    this.recorded = []; // per op 3 numbers: op code, first output handle, output count (errors)
    this.sent = false;
  }

  /** The number of ops recorded. */
  get length() { return this.recorded.length / 3; }

  /**
   * Append one op. Inputs, in the op's order (ListOps `OpInfo.inputs`; for a variadic op such as
   * `cat`, the tensors of its list): `{handle}` a session tensor (what `op()` returns), a number a
   * float scalar, `int(n)` or a BigInt an int scalar, a boolean, `null` for an optional input left
   * out, or a Tensor message (`float32(...)`) as a constant.
   *
   * @param {string} name op name from ListOps
   * @param {Array} inputs the op's inputs
   * @param {object} [options]
   * @param {object} [options.attrs] attributes by name: an integer number or BigInt is an int, any
   *   other number a float (`float(2)` forces one), a boolean, `null`, a string, an array of
   *   integers, `dtype('DTYPE_FLOAT64')`
   * @param {boolean} [options.noGrad] run with grad mode disabled (flag NO_GRAD)
   * @param {boolean} [options.describe] the reply describes the outputs: `TapeRun.info()` (DESCRIBE)
   * @param {boolean} [options.value] the reply carries outputs of at most 64 elements as they are
   *   after the batch: `TapeRun.value()` (VALUE)
   * @param {number} [options.outputs] how many outputs the op makes (1 unless given); with it,
   *   `op()` returns an array of handles
   * @returns {{handle: number} | Array<{handle: number}>} the output handles
   */
  op(name, inputs = [], options = {}) {
    if (this.sent) throw new Error('this tape was sent: record on a new session.tape()');
    const nOut = options.outputs ?? 1;
    if (!(inputs.length <= 4095 && Number.isInteger(nOut) && nOut >= 1 && nOut <= 4095)) {
      throw new RangeError(`${name}: a tape op has 0-4095 inputs and 1-4095 outputs`);
    }
    const attrs = options.attrs && Object.keys(options.attrs).length ? options.attrs : null;
    const flags = (options.noGrad ? NO_GRAD : 0) | (options.describe ? DESCRIBE : 0)
      | (options.value ? VALUE : 0) | (attrs ? ATTRS : 0);
    const code = intern(this.ops, this.opIndex, name, NAME_LIMIT, 'op names');
    // on a bad input or attribute, roll back to these lengths: the tape stays well formed
    const [start, floats, ints, constants, attrWords, listInts] = [this.code.length, this.floats.length,
      this.ints.length, this.constants.length, this.attrs.length, this.listInts];
    const first = this.session.next;
    try {
      this.code.push(code, (flags | (inputs.length << 8) | (nOut << 20)) >>> 0);
      for (let i = 0; i < inputs.length; i++) this.input(inputs[i]);
      for (let i = 0; i < nOut; i++) this.output(first + i);
      if (attrs) this.attributes(attrs);
    } catch (err) {
      this.code.length = start;
      this.floats.length = floats;
      this.ints.length = ints;
      this.constants.length = constants;
      this.attrs.length = attrWords;
      this.listInts = listInts;
      throw err;
    }
    this.session.next += nOut;
    this.recorded.push(code, first, nOut);
    if (options.outputs === undefined) return { handle: first };
    return Array.from({ length: nOut }, (_, i) => ({ handle: first + i }));
  }

  /**
   * Append a session instruction (flag INSTRUCTION, docs/wire.md "Session instructions on the
   * tape"): `call('backward', [loss, retainGraph, createGraph])`, `call('optimizer_step',
   * [{handle: opt}])`, `call('optimizer_zero_grad', [{handle: opt}, setToNone])`; the inputs after
   * the first may be left off (`null`: none). It binds nothing. Needs feature 'tape_instructions'.
   *
   * @param {string} name `backward`, `optimizer_step` or `optimizer_zero_grad`
   * @param {Array} inputs `{handle}` first (the tensor, or the optimizer's handle), then booleans
   */
  call(name, inputs) {
    if (this.sent) throw new Error('this tape was sent: record on a new session.tape()');
    const most = INSTRUCTIONS[name];
    if (most === undefined) throw new TypeError(`${name}: not a tape instruction (${Object.keys(INSTRUCTIONS).join(', ')})`);
    if (!(inputs.length >= 1 && inputs.length <= most && inputs[0] && 'handle' in inputs[0])) {
      throw new RangeError(`${name}: a handle, then at most ${most - 1} booleans`);
    }
    const code = intern(this.ops, this.opIndex, name, NAME_LIMIT, 'op names');
    const start = this.code.length;
    try {
      this.code.push(code, (INSTRUCTION | (inputs.length << 8)) >>> 0);
      for (const v of inputs) this.input(v);
    } catch (err) {
      this.code.length = start;
      throw err;
    }
    this.recorded.push(code, 0, 0);
  }

  /** Append one input word. */
  input(v) {
    let kind; let payload;
    if (typeof v === 'number') [kind, payload] = [IN.float, this.floats.pushFloat(v)];
    else if (typeof v === 'bigint') [kind, payload] = [IN.int, this.ints.pushInt(v)];
    else if (typeof v === 'boolean') [kind, payload] = [IN.bool, v ? 1 : 0];
    else if (v === null || v === undefined) [kind, payload] = [IN.none, 0];
    else if ('handle' in v) [kind, payload] = [IN.handle, handleId(v.handle, 2 ** 50)];
    else if ('int' in v) [kind, payload] = [IN.int, this.ints.pushInt(v.int)];
    else if ('float' in v) [kind, payload] = [IN.float, this.floats.pushFloat(v.float)];
    else if ('dtype' in v && 'shape' in v) {
      if (this.constants.length >= TABLE_LIMIT) throw new RangeError(`a tape holds at most ${TABLE_LIMIT} constants`);
      [kind, payload] = [IN.constant, this.constants.push(v) - 1];
    } else throw new TypeError(`not a tape input: ${JSON.stringify(v)}`);
    // word = payload << 3 | kind, split at bit 32 without leaving the safe integers
    this.code.push(((payload % 2 ** 29) * 8 + kind) >>> 0, Math.floor(payload / 2 ** 29));
  }

  /** Append one output word: the handle id itself. */
  output(h) {
    this.code.push(h % TWO32, Math.floor(h / TWO32));
  }

  /** Append one attribute run: count, then an attribute word per attribute. */
  attributes(attrs) {
    const names = Object.keys(attrs);
    if (names.length > 255) throw new RangeError('a tape op has at most 255 attributes');
    this.attrs.push(names.length, 0);
    for (const name of names) {
      const [kind, payload] = this.attribute(name, attrs[name]);
      const index = intern(this.attrNames, this.attrNameIndex, name, NAME_LIMIT, 'attribute names');
      // word = kind | name << 3 | payload << 15 (payload < 2^49), split at bit 32
      this.attrs.push((kind | (index << 3) | ((payload % 2 ** 17) << 15)) >>> 0, Math.floor(payload / 2 ** 17));
    }
  }

  /** An attribute value's [kind, payload]. */
  attribute(name, v) {
    if (typeof v === 'number') {
      return Number.isInteger(v) ? [AT.int, this.ints.pushInt(v)] : [AT.float, this.floats.pushFloat(v)];
    }
    if (typeof v === 'bigint') return [AT.int, this.ints.pushInt(v)];
    if (typeof v === 'boolean') return [AT.bool, v ? 1 : 0];
    if (v === null) return [AT.none, 0];
    if (typeof v === 'string') return [AT.string, intern(this.strings, this.stringIndex, v, TABLE_LIMIT, 'strings')];
    if (Array.isArray(v)) {
      if (this.listInts + v.length > TABLE_LIMIT) {
        throw new RangeError(`attribute ${name}: a tape's int lists hold at most ${TABLE_LIMIT} ints in all`);
      }
      this.listInts += v.length;
      const at = this.ints.pushInt(v.length); // the list's length, its ints after it
      for (const n of v) this.ints.pushInt(n);
      return [AT.ints, at];
    }
    if (v && 'int' in v) return [AT.int, this.ints.pushInt(v.int)];
    if (v && 'float' in v) return [AT.float, this.floats.pushFloat(v.float)];
    if (v && 'dtype' in v && DTYPES[v.dtype]) return [AT.dtype, DTYPES[v.dtype]];
    throw new TypeError(`attribute ${name}: not a tape attribute value: ${JSON.stringify(v)}`);
  }

  /** The tape as an Instruction message, for a batch of your own (`session.run([...])`). */
  instruction() {
    this.sent = true;
    return {
      tape: {
        ops: this.ops, code: this.code.bytes(), floats: this.floats.bytes(), ints: this.ints.bytes(),
        constants: this.constants, attrs: this.attrs.bytes(), attr_names: this.attrNames, strings: this.strings,
      },
    };
  }

  /**
   * Send the tape in one batch, between the instructions `before` and `after` (e.g. a backward and
   * an optimizer step after the forward ops). Resolves with a `TapeRun`. A failing batch rejects
   * with the ServiceError of `Session.run`; when a tape op failed, also `opName` (its op) and
   * `outputs` (the handles it would have bound; they stay unbound, as those of every later op).
   *
   * @param {{before?: object[], after?: object[]}} [around] the batch's other instructions
   * @returns {Promise<TapeRun>}
   */
  async run({ before = [], after = [] } = {}) {
    const instruction = this.instruction();
    try {
      const results = await this.session.run([...before, instruction, ...after]);
      return new TapeRun(results, before.length);
    } catch (err) {
      if (err.instruction === before.length && err.tapeOp < this.length) {
        const [code, first, n] = this.recorded.slice(3 * err.tapeOp, 3 * err.tapeOp + 3);
        err.opName = this.ops[code];
        err.outputs = Array.from({ length: n }, (_, i) => ({ handle: first + i }));
      }
      throw err;
    }
  }
}

/** A handle id as a number checked to be in range; accepts numbers and decimal strings. */
function handleId(h, limit) {
  const id = Number(h);
  if (!(Number.isSafeInteger(id) && id >= 1 && id < limit)) throw new RangeError(`bad handle ${h}`);
  return id;
}

/** What a batch holding a tape returned: its results, and the tape's described outputs and values. */
class TapeRun {
  constructor(results, index) {
    /** The batch's InstructionResults, in order (the tape's is `results[index]`). */
    this.results = results;
    const tape = results[index].tape;
    this.infos = new Map(tape.tensors.map((info) => [Number(info.handle), info]));
    this.tensors = new Map(tape.values.map((hv) => [Number(hv.handle), hv.value]));
  }

  /** The TensorInfo of an output of a `describe` op (dtype, shape, requires_grad, grad_fn, ...). */
  info(h) { return this.infos.get(Number(h.handle ?? h)); }

  /** The Tensor message of an output of a `value` op, or undefined (> 64 elements, released, too large). */
  tensor(h) { return this.tensors.get(Number(h.handle ?? h)); }

  /** The elements of an output of a `value` op as a typed array (`decode`), or undefined. */
  value(h) {
    const t = this.tensor(h);
    return t === undefined ? undefined : decode(t);
  }
}

module.exports = {
  grpc, connect, call, float32, decode, richError, Session, op, value, features, Tape, TapeRun, int, float,
  dtype, DTYPES,
};
