// The tape recorder's costs, against a running server (start one with `gradserve serve`):
//
//   GRADSERVE_TARGET=localhost:50051 node bench/tape.js [rounds]
//
// - recording: ns per op appended to a tape (`tape.op('mul', [h, 1.5])`), and building the same
//   op as an ApplyOp message (`gs.op(...)`) for comparison; no network.
// - a 1000-op chain (mul/add by float constants on a 16-element tensor that requires grad, then
//   backward, then release) sent in one batch: as one tape (the last op VALUE-flagged, so its value
//   comes with the reply), as 1000 ApplyOp messages (each output described, then a Fetch), and as
//   1000 ApplyOps with omit_info. Times are per batch, as ratios to a DescribeSession round trip
//   (the echo baseline) measured in the same rounds, interleaved; min and median over rounds.
'use strict';

const gs = require('..');

const CHAIN = 1000;
const rounds = Number(process.argv[2] ?? 15);

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** ns per op to record `n` ops, best of `reps`; `record(i)` records the i-th op. */
function perOp(n, reps, start, record) {
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const state = start();
    const t0 = now();
    for (let i = 0; i < n; i++) record(state, i);
    best = Math.min(best, ((now() - t0) * 1e6) / n);
  }
  return best;
}

function recordingCosts(session) {
  const n = 50000; // 4 words an op: 200,000 words, within a tape's 262,144
  const x = { handle: 1 };
  const tape = perOp(n, 7, () => ({ tape: session.tape(), h: x }), (s, i) => {
    s.h = s.tape.op(i % 2 ? 'mul' : 'add', [s.h, 1.0001]);
  });
  const withBytes = perOp(n, 7, () => ({ tape: session.tape(), h: x }), (s, i) => {
    s.h = s.tape.op(i % 2 ? 'mul' : 'add', [s.h, 1.0001]);
    if (i === n - 1) s.tape.instruction(); // the message's byte strings
  });
  const applyOp = perOp(n, 7, () => ({ list: [], next: 2 }), (s, i) => {
    s.list.push(gs.op(i % 2 ? 'mul' : 'add', [{ handle: s.next - 1 }, 1.0001], [s.next++]));
  });
  return { tape, withBytes, applyOp };
}

const GRADIENT = { constant: gs.float32(Array(16).fill(1)) };

/**
 * The three forms of one chain's batch: [name, build(session, x, drop) -> {instructions, last,
 * read(results)}]. Each batch releases the chain's intermediates and `drop` (the previous
 * batch's last result) and keeps its own last result, whose value it reads.
 */
const FORMS = [
  ['tape', (s, x, drop) => {
    const tape = s.tape();
    const first = s.next;
    let h = x;
    for (let i = 0; i < CHAIN; i++) h = tape.op(i % 2 ? 'mul' : 'add', [h, 1.0001], { value: i === CHAIN - 1 });
    const handles = [...drop, ...Array.from({ length: CHAIN - 1 }, (_, i) => first + i)];
    return {
      instructions: [tape.instruction(), { backward: { tensor: h.handle, gradient: GRADIENT } }, { release: { handles } }],
      last: h.handle,
      read: (results) => new gs.TapeRun(results, 0).value(h),
    };
  }],
  ...[false, true].map((omit) => [omit ? 'applyop_omit_info' : 'applyop', (s, x, drop) => {
    const ops = [];
    const first = s.next;
    let h = x.handle;
    for (let i = 0; i < CHAIN; i++) {
      const out = s.handle();
      ops.push({ apply_op: { op: i % 2 ? 'mul' : 'add', inputs: [{ handle: h }, { float_scalar: 1.0001 }], outputs: [out], omit_info: omit } });
      h = out;
    }
    const handles = [...drop, ...Array.from({ length: CHAIN - 1 }, (_, i) => first + i)];
    return {
      instructions: [...ops, { fetch: { handle: h, value: true } }, { backward: { tensor: h, gradient: GRADIENT } }, { release: { handles } }],
      last: h,
      read: (results) => gs.decode(results[CHAIN].fetch.value),
    };
  }]),
];

async function main() {
  const stubs = gs.connect(process.env.GRADSERVE_TARGET ?? 'localhost:50051');
  const session = await gs.Session.create(stubs);
  const x = { handle: session.handle() };
  await session.run([{ create_tensor: { handle: x.handle, value: gs.float32(Array(16).fill(0.5)), requires_grad: true } }]);
  const times = { describe: [], ...Object.fromEntries(FORMS.map(([name]) => [name, []])) };
  let drop = [];
  let expected;
  for (let r = 0; r < rounds + 1; r++) { // round 0 warms up
    let t0 = now();
    await session.describe();
    if (r) times.describe.push(now() - t0);
    for (const [name, build] of FORMS) {
      const { instructions, last, read } = build(session, x, drop);
      t0 = now();
      const results = await session.run(instructions);
      if (r) times[name].push(now() - t0);
      const value = read(results)[0];
      expected ??= value;
      if (value !== expected) throw new Error(`${name}: the chain's value ${value}, not ${expected}`);
      drop = [last];
    }
  }
  const rec = recordingCosts(session);
  await session.close();
  stubs.close();
  const base = median(times.describe);
  const baseMin = Math.min(...times.describe);
  console.log(`recording, ns per op: tape ${rec.tape.toFixed(0)}, tape incl. instruction() ${rec.withBytes.toFixed(0)}, ApplyOp message ${rec.applyOp.toFixed(0)}`);
  console.log(`DescribeSession round trip: median ${base.toFixed(3)} ms (min ${Math.min(...times.describe).toFixed(3)}) over ${rounds} rounds`);
  console.log(`${CHAIN}-op chain + backward + release, one batch:`);
  for (const [name] of FORMS) {
    const [mn, md] = [Math.min(...times[name]), median(times[name])];
    console.log(`  ${name.padEnd(18)} min ${mn.toFixed(2)} ms = ${(mn / baseMin).toFixed(1)} x DescribeSession's min, `
      + `median ${md.toFixed(2)} ms = ${(md / base).toFixed(1)} x its median`
      + (name === 'tape' ? '' : `; ${(mn / Math.min(...times.tape)).toFixed(2)} x tape (min), ${(md / median(times.tape)).toFixed(2)} x (median)`));
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
