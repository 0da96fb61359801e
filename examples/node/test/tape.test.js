// The tape recorder (gradserve.js `Tape`, docs/wire.md "The instruction tape") against a running
// server: GRADSERVE_TARGET=host:port node --test test/. The inputs and values it records
// (../testing/results.js) are recomputed with torch by tests/test_node_client.py.
'use strict';

const assert = require('node:assert/strict');
const { test, after } = require('node:test');
const gs = require('..');
const record = require('../testing/results').recorder(__filename);

const target = process.env.GRADSERVE_TARGET ?? 'localhost:50051';
const stubs = gs.connect(target);
after(() => stubs.close());

const words = (buf) => Array.from({ length: buf.length / 8 }, (_, i) => buf.readBigUInt64LE(i * 8));
/** A header word as docs/wire.md writes it: op | flags << 32 | n_in << 40 | n_out << 52. */
const header = (op, flags, nIn, nOut) => BigInt(op) | BigInt(flags) << 32n | BigInt(nIn) << 40n | BigInt(nOut) << 52n;
const list = (t) => Array.from(t, Number);
/** A float32 tensor of shape `shape` with the given elements, as a nested-free record for Python. */
const data = (shape, f) => Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.fround(f(i)));

test('the server lists the tape features', async () => {
  const features = await gs.features(stubs);
  assert.ok(features.has('tape') && features.has('tape_attrs'), [...features].join(', '));
});

test("the recorder encodes docs/wire.md's examples word for word", () => {
  const session = new gs.Session(stubs, 'offline'); // nothing is sent
  const x = { handle: session.handle() };
  let tape = session.tape();
  const y = tape.op('mul', [x, 1.5]);
  tape.op('add', [y, gs.int(2)], { describe: true });
  let msg = tape.instruction().tape;
  assert.deepEqual(msg.ops, ['mul', 'add']);
  assert.deepEqual(words(msg.code), [header(0, 0, 2, 1), 1n << 3n | 0n, 0n << 3n | 1n, 2n,
    header(1, 2, 2, 1), 2n << 3n | 0n, 0n << 3n | 2n, 3n]);
  assert.equal(msg.floats.toString('hex'), '000000000000f83f');
  assert.equal(msg.ints.toString('hex'), '0200000000000000');
  assert.equal(msg.attrs.length, 0);

  session.next = 2;
  tape = session.tape();
  const s = tape.op('sum', [x], { attrs: { dim: 1, keepdim: true } });
  tape.op('transpose', [s], { attrs: { dim0: 0, dim1: 1 } });
  msg = tape.instruction().tape;
  assert.deepEqual(msg.attr_names, ['dim', 'keepdim', 'dim0', 'dim1']);
  assert.deepEqual(words(msg.code), [header(0, 8, 1, 1), 1n << 3n, 2n, header(1, 8, 1, 1), 2n << 3n, 3n]);
  assert.deepEqual(words(msg.ints), [1n, 0n, 1n]);
  assert.deepEqual(words(msg.attrs), [2n, 2n | 0n << 3n | 0n << 15n, 3n | 1n << 3n | 1n << 15n,
    2n, 2n | 2n << 3n | 1n << 15n, 2n | 3n << 3n | 2n << 15n]);

  tape = session.tape();
  tape.op('permute', [x], { attrs: { dims: [1, 0] } });
  msg = tape.instruction().tape;
  assert.deepEqual([words(msg.ints), words(msg.attrs)], [[2n, 1n, 0n], [1n, 0n | 0n << 3n | 0n << 15n]]);
  assert.throws(() => tape.op('exp', [x]), /was sent/);
});

test('an op the recorder refuses leaves the tape without it', () => {
  const session = new gs.Session(stubs, 'offline'); // nothing is sent
  const x = { handle: session.handle() };
  const tape = session.tape();
  tape.op('mul', [x, 2.5]);
  assert.throws(() => tape.op('add', [x, 1.5, { bogus: 1 }]), TypeError);
  assert.throws(() => tape.op('reshape', [x], { attrs: { shape: Array(262145).fill(1) } }), RangeError);
  assert.throws(() => tape.op('exp', [x], { outputs: 0 }), RangeError);
  const y = tape.op('exp', [x], { attrs: { dummy: [] } });
  assert.equal(y.handle, 3);
  assert.equal(tape.length, 2);
  const msg = tape.instruction().tape;
  assert.deepEqual(msg.ops, ['mul', 'add', 'reshape', 'exp']); // names no op references are allowed
  assert.deepEqual(words(msg.code), [header(0, 0, 2, 1), 1n << 3n, 1n, 2n, header(3, 8, 1, 1), 1n << 3n, 3n]);
  assert.deepEqual(words(msg.floats), [words(Buffer.from(new Float64Array([2.5]).buffer))[0]]);
  assert.deepEqual(msg.attr_names, ['dummy']);
  assert.deepEqual([words(msg.ints), words(msg.attrs)], [[0n], [1n, 0n | 0n << 3n | 0n << 15n]]);
});

test('tape: linear regression by SGD, forward and update on tapes, one round trip a step', async () => {
  const s = await gs.Session.create(stubs);
  const [n, lr, steps] = [16, 0.1, 8];
  const xs = data([n, 3], (i) => Math.sin(0.7 * i + 0.3));
  const ys = data([n, 1], (i) => 1.5 * xs[3 * i] - 2 * xs[3 * i + 1] + 0.5 * xs[3 * i + 2] + 0.3 + 0.05 * Math.cos(3 * i));
  record('linreg', { xs, ys, lr, steps });
  const [X, Y] = [{ handle: s.handle() }, { handle: s.handle() }];
  let [w, b] = [{ handle: s.handle() }, { handle: s.handle() }];
  await s.run([
    { create_tensor: { handle: X.handle, value: gs.float32(xs, [n, 3]) } },
    { create_tensor: { handle: Y.handle, value: gs.float32(ys, [n, 1]) } },
    { create_tensor: { handle: w.handle, value: gs.float32([0, 0, 0], [3, 1]), requires_grad: true } },
    { create_tensor: { handle: b.handle, value: gs.float32(0), requires_grad: true } },
  ]);
  const losses = [];
  let forward; let loss; let described;
  for (let step = 0; step < steps; step++) {
    forward = s.tape();
    const pred = forward.op('add', [forward.op('matmul', [X, w]), b]);
    const err = forward.op('sub', [pred, Y]);
    loss = forward.op('mean', [forward.op('pow', [err, gs.int(2)])], { value: true, describe: true });
    const [gw, gb] = [{ handle: s.handle() }, { handle: s.handle() }];
    const update = s.tape(); // w - lr * w.grad under no_grad: new leaves, made to require grad
    const w2 = update.op('sub', [w, update.op('mul', [gw, lr], { noGrad: true })], { noGrad: true });
    const b2 = update.op('sub', [b, update.op('mul', [gb, lr], { noGrad: true })], { noGrad: true, value: true });
    const results = await s.run([
      forward.instruction(),
      { backward: { tensor: loss.handle } },
      { get_grad: { handle: w.handle, result: gw.handle } },
      { get_grad: { handle: b.handle, result: gb.handle } },
      update.instruction(),
      { set_requires_grad: { handle: w2.handle, requires_grad: true } },
      { set_requires_grad: { handle: b2.handle, requires_grad: true } },
      { release: { handles: [w.handle, b.handle, gw.handle, gb.handle] } },
    ]);
    const [fwd, upd] = [new gs.TapeRun(results, 0), new gs.TapeRun(results, 4)];
    losses.push(fwd.value(loss)[0]); // prefetched: no Fetch instruction
    described = fwd.info(loss);
    assert.equal(fwd.results[0].tape.tensors.length, 1); // only the DESCRIBE op is described
    assert.equal(upd.value(b2).length, 1);
    [w, b] = [w2, b2];
  }
  const final = await s.run([{ fetch: { handle: w.handle, value: true } }, { fetch: { handle: b.handle, value: true } }]);
  record('linreg_losses', losses);
  record('linreg_w', list(gs.decode(final[0].fetch.value)));
  record('linreg_b', gs.decode(final[1].fetch.value)[0]);
  record('linreg_loss_info', { shape: described.shape, grad_fn: described.grad_fn, requires_grad: described.requires_grad });
  assert.ok(losses.at(-1) < losses[0] / 2, losses.join(' '));
  await s.close();
});

test('tape: an SGD iteration as one tape (zero_grad, forward, backward, step)', async () => {
  const s = await gs.Session.create(stubs);
  assert.ok((await gs.features(stubs)).has('tape_instructions'));
  const [n, steps] = [12, 6];
  const xs = data([n, 2], (i) => Math.cos(0.9 * i + 0.1));
  const ys = data([n, 1], (i) => 0.7 * xs[2 * i] - 1.2 * xs[2 * i + 1] + 0.4);
  record('iteration', { xs, ys, steps });
  const [X, Y, w, b, opt] = Array.from({ length: 5 }, () => ({ handle: s.handle() }));
  await s.run([
    { create_tensor: { handle: X.handle, value: gs.float32(xs, [n, 2]) } },
    { create_tensor: { handle: Y.handle, value: gs.float32(ys, [n, 1]) } },
    { create_tensor: { handle: w.handle, value: gs.float32([0, 0], [2, 1]), requires_grad: true } },
    { create_tensor: { handle: b.handle, value: gs.float32([0], [1]), requires_grad: true } },
    { create_optimizer: { optimizer: opt.handle, params: [w.handle, b.handle], sgd: { lr: 0.2, momentum: 0.5 } } },
  ]);
  const losses = [];
  for (let step = 0; step < steps; step++) {
    const tape = s.tape();
    tape.call('optimizer_zero_grad', [opt]);
    const err = tape.op('sub', [tape.op('add', [tape.op('matmul', [X, w]), b]), Y]);
    const loss = tape.op('mean', [tape.op('mul', [err, err])], { value: true });
    tape.call('backward', [loss]);
    tape.call('optimizer_step', [opt]);
    const run = await tape.run();
    assert.equal(run.results.length, 1); // the whole iteration: one instruction
    losses.push(run.value(loss)[0]);
  }
  const final = await s.run([{ fetch: { handle: w.handle, value: true } }, { fetch: { handle: b.handle, value: true } }]);
  record('iteration_losses', losses);
  record('iteration_w', list(gs.decode(final[0].fetch.value)));
  record('iteration_b', list(gs.decode(final[1].fetch.value)));
  // an instruction's error names its tape op, and the recorder refuses what is not one
  const bad = s.tape();
  bad.call('backward', [w]); // w is not a scalar
  await assert.rejects(bad.run(), (e) => e.tapeOp === 0 && e.opName === 'backward'
    && /grad can be implicitly created only for scalar outputs/.test(e.details));
  assert.throws(() => s.tape().call('mul', [w]), TypeError);
  assert.throws(() => s.tape().call('optimizer_step', [opt, true]), RangeError);
  await s.close();
});

test('tape: ops with attributes of every kind, and optional inputs left out', async () => {
  const s = await gs.Session.create(stubs);
  const xs = data([2, 3, 4], (i) => Math.cos(1.3 * i) * 2);
  record('attrs_x', xs);
  const x = { handle: s.handle() };
  const tape = s.tape();
  const keep = { describe: true, value: true };
  const ops = {
    sum_dim1_keepdim: tape.op('sum', [x], { attrs: { dim: 1, keepdim: true }, ...keep }),
    sum_dims02: tape.op('sum', [x], { attrs: { dim: [0, 2] }, ...keep }),
    sum_float64: tape.op('sum', [x], { attrs: { dtype: gs.dtype('DTYPE_FLOAT64') }, ...keep }),
    transpose_0_2: tape.op('transpose', [x], { attrs: { dim0: 0, dim1: 2 }, ...keep }),
    reshape_4_6: tape.op('reshape', [x], { attrs: { shape: [4, -1] }, ...keep }),
    softmax_dim2: tape.op('softmax', [x], { attrs: { dim: 2 }, ...keep }),
    permute_201: tape.op('permute', [x], { attrs: { dims: [2, 0, 1] }, ...keep }),
    gelu_tanh: tape.op('gelu', [x], { attrs: { approximate: 'tanh' }, ...keep }),
    leaky_relu_02: tape.op('leaky_relu', [x], { attrs: { negative_slope: 0.2 }, ...keep }),
    std_correction0: tape.op('std', [x], { attrs: { dim: 1, correction: 0 }, ...keep }),
    cumsum_dtype_none: tape.op('cumsum', [x], { attrs: { dim: 1, dtype: null }, ...keep }),
    add_alpha: tape.op('add', [x, x], { attrs: { alpha: gs.float(2) }, ...keep }),
    clamp_max_only: tape.op('clamp', [x, null, 0.5], keep),
    clamp_min_only: tape.op('clamp', [x, -0.5], keep), // the optional max left off: n_in 2
    cat_dim1: tape.op('cat', [x, x], { attrs: { dim: 1 }, ...keep }),
  };
  const split = tape.op('split', [x], { attrs: { split_size: 1, dim: 0 }, outputs: 2, ...keep });
  // one op with more than 64 elements: described, its value left out
  const big = tape.op('expand', [x], { attrs: { size: [3, 2, 3, 4] }, ...keep });
  const run = await tape.run({ before: [{ create_tensor: { handle: x.handle, value: gs.float32(xs, [2, 3, 4]), requires_grad: true } }] });
  const got = {};
  for (const [name, h] of Object.entries({ ...ops, split_0: split[0], split_1: split[1], expand: big })) {
    const info = run.info(h);
    const value = run.value(h);
    got[name] = { shape: info.shape.map(Number), dtype: info.dtype, grad_fn: info.grad_fn, value: value === undefined ? null : list(value) };
  }
  record('attrs_results', got);
  assert.equal(got.expand.value, null);
  assert.deepEqual(got.expand.shape, [3, 2, 3, 4]);
  assert.equal(run.results.length, 2);
  await s.close();
});

test('tape: an op failing mid-tape reports its instruction, index and status; earlier ops stay applied', async () => {
  const s = await gs.Session.create(stubs);
  const a = { handle: s.handle() };
  const tape = s.tape();
  const e = tape.op('exp', [a]);
  const t = tape.op('transpose', [e], { attrs: { dim0: 0, dim1: 1 } });
  const bad = tape.op('mm', [e, e]); // (2x3) @ (2x3)
  const later = tape.op('neg', [t]);
  const err = await tape.run({
    before: [{ create_tensor: { handle: a.handle, value: gs.float32([1, 2, 3, 4, 5, 6], [2, 3]) } }],
    after: [{ fetch: { handle: e.handle, value: true } }],
  }).catch((x) => x);
  assert.equal(err.code, gs.grpc.status.INVALID_ARGUMENT);
  assert.deepEqual([err.instruction, err.tapeOp, err.opName, err.outputs], [1, 2, 'mm', [bad]]);
  const info = gs.richError(err).details.find((d) => d.type === 'ErrorInfo');
  assert.deepEqual([info.metadata.tape_op, info.metadata.instruction, info.metadata.op], ['2', '1', 'mm']);
  record('midtape_message', err.details);
  // the create and the tape's first two ops stayed applied; the failing op and the later ones bound nothing
  const kept = await s.run([{ fetch: { handle: t.handle, value: true } }]);
  assert.deepEqual(kept[0].fetch.info.shape, ['3', '2']);
  for (const h of [bad, later]) {
    const gone = await s.run([{ fetch: { handle: h.handle } }]).catch((x) => x);
    assert.equal(gone.code, gs.grpc.status.NOT_FOUND);
  }

  const unknown = s.tape();
  unknown.op('exp', [a]);
  unknown.op('exp', [{ handle: 999 }]);
  const nf = await unknown.run().catch((x) => x);
  assert.equal(nf.code, gs.grpc.status.NOT_FOUND);
  assert.deepEqual([nf.instruction, nf.tapeOp, nf.opName], [0, 1, 'exp']);
  await s.close();
});

test('ops past the session\'s instruction limit refuse the batch, naming the first op past it', async () => {
  const reply = await gs.call(stubs.service, 'CreateSession', { options: { limits: { max_instructions: 4 } } });
  const s = new gs.Session(stubs, reply.session_id);
  const x = { handle: s.handle() };
  const tape = s.tape();
  let h = x;
  for (let i = 0; i < 4; i++) h = tape.op('exp', [h]);
  const err = await tape.run({ before: [{ create_tensor: { handle: x.handle, value: gs.float32(1) } }] }).catch((e) => e);
  assert.equal(err.code, gs.grpc.status.RESOURCE_EXHAUSTED);
  assert.deepEqual([err.instruction, err.tapeOp], [1, 3]); // the create and ops 0-2 make 4
  const info = gs.richError(err).details.find((d) => d.type === 'ErrorInfo');
  assert.deepEqual([info.reason, info.metadata.limit], ['LIMIT_EXCEEDED', 'max_instructions']);
  const unbound = await s.run([{ fetch: { handle: x.handle } }]).catch((e) => e);
  assert.equal(unbound.code, gs.grpc.status.NOT_FOUND); // refused before anything ran
  await s.close();
});

/** A copy of a tape message with word `i` of its `field` (code or attrs) replaced by `f(word)`. */
function patched(tape, field, i, f) {
  const buf = Buffer.from(tape[field]);
  buf.writeBigUInt64LE(BigInt.asUintN(64, f(buf.readBigUInt64LE(i * 8))), i * 8);
  return { ...tape, [field]: buf };
}

test('malformed tapes refuse the whole batch with INVALID_ARGUMENT naming the tape op', async () => {
  const s = await gs.Session.create(stubs);
  const x = { handle: s.handle() };
  const tape = s.tape();
  tape.op('exp', [x]); // words 0-2
  tape.op('sum', [x], { attrs: { dim: 0 } }); // words 3-5; attrs words 0-1
  tape.op('mul', [x, 2.5]); // words 6-9
  const good = tape.instruction().tape;
  const cases = [
    ['a code length not a multiple of 8', { ...good, code: good.code.subarray(0, 20) }, undefined],
    ['a flag bit past ATTRS', patched(good, 'code', 6, (w) => w | 16n << 32n), 2],
    ['an op code past the op names', patched(good, 'code', 3, (w) => w | 7n), 1],
    ['input kind 6', patched(good, 'code', 7, (w) => w | 6n), 2],
    ['a float index past the floats', patched(good, 'code', 8, (w) => w + (5n << 3n)), 2],
    ['handle 0 as an input', patched(good, 'code', 1, () => 0n), 0],
    ['no outputs', patched(good, 'code', 0, (w) => w & ~(0xfffn << 52n)), 0],
    ['an op reaching past the code', patched(good, 'code', 6, (w) => w + (1n << 40n)), 2],
    ['attribute kind 7', patched(good, 'attrs', 1, (w) => w | 7n), 1],
    ['an attribute name index past the names', patched(good, 'attrs', 1, (w) => w | 9n << 3n), 1],
    ['attribute words left over', { ...good, attrs: Buffer.concat([good.attrs, Buffer.alloc(8)]) }, undefined],
    ['an ATTRS flag without attribute words', { ...good, attrs: Buffer.alloc(0) }, 1],
  ];
  const seen = {};
  for (const [what, bad, op] of cases) {
    const h = s.handle();
    const err = await s.run([{ create_tensor: { handle: h, value: gs.float32(1) } }, { tape: bad }]).catch((e) => e);
    assert.equal(err.code, gs.grpc.status.INVALID_ARGUMENT, `${what}: ${err.details}`);
    assert.deepEqual([err.instruction, err.tapeOp], [1, op], `${what}: ${err.details}`);
    const rich = gs.richError(err);
    assert.equal(rich.details.find((d) => d.type === 'ErrorInfo').reason, 'INVALID_REQUEST', what);
    const field = rich.details.find((d) => d.type === 'BadRequest').field_violations[0].field;
    assert.equal(field, op === undefined ? 'instructions[1].tape' : `instructions[1].tape.op[${op}]`, what);
    // refused before anything ran: the create before the tape was not applied
    const unbound = await s.run([{ fetch: { handle: h } }]).catch((e) => e);
    assert.equal(unbound.code, gs.grpc.status.NOT_FOUND, what);
    seen[what] = err.details;
  }
  record('malformed_messages', seen);
  // the session still serves, and the intact tape runs
  const ok = await s.run([{ create_tensor: { handle: x.handle, value: gs.float32([1, 2]) } }, { tape: good }]);
  assert.equal(ok[1].result, 'tape');
  await s.close();
});
