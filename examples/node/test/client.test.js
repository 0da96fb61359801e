// The Node.js client against a running server: GRADSERVE_TARGET=host:port node --test test/
// The values it records (../testing/results.js) are compared with torch by tests/test_node_client.py.
'use strict';

const assert = require('node:assert/strict');
const { test, after } = require('node:test');
const gs = require('..');
const record = require('../testing/results').recorder(__filename);

const target = process.env.GRADSERVE_TARGET ?? 'localhost:50051';
const stubs = gs.connect(target);

after(() => stubs.close());

test('health check says SERVING', async () => {
  for (const service of ['', 'gradserve.v1.AutogradService']) {
    const reply = await gs.call(stubs.health, 'Check', { service });
    assert.equal(reply.status, 'SERVING');
  }
});

test('ListOps describes the catalogue', async () => {
  const cat = await gs.call(stubs.service, 'ListOps', {});
  assert.ok(cat.opset_version >= 1);
  assert.ok(cat.dtypes.includes('DTYPE_FLOAT32'));
  const byName = Object.fromEntries(cat.ops.map((o) => [o.name, o]));
  assert.deepEqual(byName.clamp.inputs, ['input', 'min', 'max']);
  record('opset_version', cat.opset_version);
  record('op_count', cat.ops.length);
  record('pow_backward_names', byName.pow.backward_names);
  record('server_version', cat.server_version);
  record('protocol_version', cat.protocol_version);
});

test('stateless: first and second derivatives of sum(sin(x * w))', async () => {
  const ref = (id) => ({ ref: { id, index: 0 } });
  const reply = await gs.call(stubs.service, 'RunGraph', {
    graph: {
      inputs: [{ name: 'x' }, { name: 'w' }],
      nodes: [
        { id: 'xw', op: 'mul', inputs: [ref('x'), ref('w')] },
        { id: 's', op: 'sin', inputs: [ref('xw')] },
        { id: 'y', op: 'sum', inputs: [ref('s')] },
      ],
      outputs: [{ name: 'y', ref: { id: 'y', index: 0 } }],
    },
    inputs: { x: gs.float32([0.1, 0.2, 0.3]), w: gs.float32([1, 2, 3]) },
    wrt: ['x'],
    order: 2,
  });
  const [dx, d2x] = reply.gradients[0].derivatives.map((d) => Array.from(gs.decode(d.tensor)));
  record('stateless_y', gs.decode(reply.outputs[0].tensor)[0]);
  record('stateless_dx', dx);
  record('stateless_d2x', d2x);
});

test('session: the seed neuron trained with SGD on a clamped BCE', async () => {
  const s = await gs.Session.create(stubs);
  const [xs, ys, w, b, opt] = [1, 2, 3, 4, 5];
  s.next = 6;
  await s.run([
    { create_tensor: { handle: xs, value: gs.float32([0.5, 1.5, -1.0, 2.0, 6.7]) } },
    { create_tensor: { handle: ys, value: gs.float32([0.0, 1.0, 0.0, 1.0, 1.0]) } },
    { create_tensor: { handle: w, value: gs.float32(1.0), requires_grad: true } },
    { create_tensor: { handle: b, value: gs.float32(0.0), requires_grad: true } },
    { create_optimizer: { optimizer: opt, params: [w, b], sgd: { lr: 0.5 } } },
  ]);
  const h = (n) => ({ handle: n });
  const losses = [];
  for (let step = 0; step < 5; step++) {
    const t = Array.from({ length: 13 }, () => s.handle());
    const loss = t[12];
    const results = await s.run([
      { optimizer_zero_grad: { optimizer: opt } },
      gs.op('mul', [h(w), h(xs)], [t[0]]),
      gs.op('add', [h(t[0]), h(b)], [t[1]]),
      gs.op('sigmoid', [h(t[1])], [t[2]]),
      gs.op('clamp', [h(t[2]), 1e-8, 1 - 1e-8], [t[3]]), // min and max are inputs, not attributes
      gs.op('log', [h(t[3])], [t[4]]),
      gs.op('mul', [h(ys), h(t[4])], [t[5]]),
      gs.op('sub', [1.0, h(t[3])], [t[6]]), // 1 - y_pred
      gs.op('log', [h(t[6])], [t[7]]),
      gs.op('sub', [1.0, h(ys)], [t[8]]), // 1 - ys
      gs.op('mul', [h(t[8]), h(t[7])], [t[9]]),
      gs.op('add', [h(t[5]), h(t[9])], [t[10]]),
      gs.op('mean', [h(t[10])], [t[11]]),
      gs.op('neg', [h(t[11])], [loss]),
      { backward: { tensor: loss } },
      { optimizer_step: { optimizer: opt } },
      { fetch: { handle: loss, value: true } },
      { release: { handles: t } },
    ]);
    losses.push(gs.decode(results.at(-2).fetch.value)[0]);
  }
  const final = await s.run([{ fetch: { handle: w, value: true } }, { fetch: { handle: b, value: true } }]);
  record('train_losses', losses);
  record('train_w', gs.decode(final[0].fetch.value)[0]);
  record('train_b', gs.decode(final[1].fetch.value)[0]);
  assert.ok(losses.at(-1) < losses[0]);
  await s.close();
});

test('errors carry google.rpc.Status details', async () => {
  const s = await gs.Session.create(stubs);
  await s.run([
    { create_tensor: { handle: 1, value: gs.float32(2.0), requires_grad: true } },
    gs.op('sin', [{ handle: 1 }], [2]),
    { backward: { tensor: 2 } },
  ]);
  const freed = await s.run([{ backward: { tensor: 2 } }]).catch((e) => e);
  assert.equal(freed.code, gs.grpc.status.FAILED_PRECONDITION);
  const rich = gs.richError(freed);
  const info = rich.details.find((d) => d.type === 'ErrorInfo');
  record('freed_reason', info.reason);
  record('freed_metadata', info.metadata);
  assert.equal(info.domain, 'gradserve.dev');
  assert.equal(rich.message, freed.details);

  const zero = await s.run([{ create_tensor: { handle: 0, value: gs.float32(1.0) } }]).catch((e) => e);
  assert.equal(zero.code, gs.grpc.status.INVALID_ARGUMENT);
  const bad = gs.richError(zero).details.find((d) => d.type === 'BadRequest');
  record('handle0_reason', gs.richError(zero).details[0].reason);
  record('handle0_field', bad.field_violations[0].field);
  await s.close();
});

test('decode copes with raw bytes at an unaligned offset', () => {
  const pool = Buffer.alloc(13);
  const raw = pool.subarray(1, 13); // byteOffset 1: a Float32Array view would throw
  Buffer.from(Float32Array.from([1.5, -2, 3.25]).buffer).copy(raw);
  assert.throws(() => new Float32Array(raw.buffer, raw.byteOffset, 3), RangeError);
  assert.deepEqual(Array.from(gs.decode({ dtype: 'DTYPE_FLOAT32', data: 'raw', raw })), [1.5, -2, 3.25]);
});
