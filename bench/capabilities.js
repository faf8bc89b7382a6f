// Case 6 — capability work, on one thread. There is no Node baseline for
// these: the figures are absolute, for comparison between runs and machines.
//
//   transfer      A owns 1000 nodes; transfer(node, B) gives B a new handle
//                 to each (timed: ns per transfer), then B releases them
//                 (timed apart: ns per release). A third peer also holds
//                 every node, so that B's release never queues node-release.
//   16 handles    A sends a message carrying handles to 16 of its nodes to
//                 B; B receives it, reads `handles` (16 new handle IDs),
//                 releases the slice and releases the 16 handles. Timed per
//                 message, next to the same message with no handles: the
//                 difference ÷ 16 is the cost of one handle.
//   destroy       A node held by 1000 peers: destroy(node, releaseHandles)
//                 queues a node-destroy on each holder (timed), then every
//                 holder receives it and releases its handle (timed apart).
//   hive          test-hive of the kernel's self-tests: 1000 peers each own
//                 a node that a parent holds, and each holds handles to 100
//                 siblings' nodes (100,000 handles). All 1000 disconnect, and
//                 the parent receives the 1000 node-destroy notifications
//                 (timed together). Needs maxHandles above the default
//                 65,536 per user: the bus is made with 2^18.

import { Bus } from "bus1-wasm";
import { now, summarize, timeLoop, warmUp, compare } from "./harness.js";

const NODES = 1000;
const HOLDERS = 1000;
const HIVE = { peers: 1000, siblings: 100 };

const node = (i) => 4 * (i + 1); // caller-chosen IDs: 4, 8, 12 …

async function transferCosts(bus, rounds) {
  const a = bus.connect(), b = bus.connect(), c = bus.connect();
  const nodes = Array.from({ length: NODES }, (_, i) => node(i));
  for (const id of nodes) a.transfer(id, c); // makes the node; c holds it too
  const ids = new Array(NODES);
  const once = () => {
    const t0 = now();
    for (let i = 0; i < NODES; i++) ids[i] = a.transfer(nodes[i], b);
    const t1 = now();
    for (let i = 0; i < NODES; i++) b.release(ids[i]);
    const t2 = now();
    return [(t1 - t0) * 1e6 / NODES, (t2 - t1) * 1e6 / NODES];
  };
  for (let i = 0; i < 20; i++) once(); // warm-up
  const transfer = [], release = [];
  for (let r = 0; r < rounds; r++) {
    // several batches per round, the median batch kept: one batch is short
    const batches = Array.from({ length: 9 }, once);
    transfer.push(summarize(batches.map((x) => x[0])).median);
    release.push(summarize(batches.map((x) => x[1])).median);
  }
  for (const p of [a, b, c]) p.disconnect();
  return [
    { name: "transfer (new handle in the receiver)", value: summarize(transfer).median, unit: "ns", spread: summarize(transfer) },
    { name: "release (the receiver's last reference)", value: summarize(release).median, unit: "ns", spread: summarize(release) },
  ];
}

async function attachCosts(bus, rounds, windowMs, log) {
  const a = bus.connect(), b = bus.connect(), c = bus.connect();
  const attached = Array.from({ length: 16 }, (_, i) => node(i));
  for (const id of attached) a.transfer(id, c); // c keeps every node held
  const dst = b.transfer(4, a);
  const payload = new Uint8Array(64);
  const cycle = (handles) => (n) => {
    for (let i = 0; i < n; i++) {
      a.send(dst, payload, { handles });
      const m = b.recv();
      const got = m.handles;
      m.release();
      for (let h = 0; h < got.length; h++) b.release(got[h]);
    }
  };
  const variants = [
    { name: "16 handles", measure: () => timeLoop(cycle(attached), windowMs) },
    { name: "no handles", measure: () => timeLoop(cycle([]), windowMs) },
  ];
  await warmUp(variants);
  const { result, rerun } = await compare(variants, rounds, log);
  for (const p of [a, b, c]) p.disconnect();
  const perHandle = summarize(result["16 handles"].samples.map((t, r) => (t - result["no handles"].samples[r]) / 16));
  return [
    { name: "message with 16 handles: send, recv, release slice and handles", value: result["16 handles"].median, unit: "ns", spread: result["16 handles"], rerun },
    { name: "same message without handles", value: result["no handles"].median, unit: "ns", spread: result["no handles"], rerun },
    { name: "one attached handle (difference ÷ 16)", value: perHandle.median, unit: "ns", spread: perHandle, rerun },
  ];
}

async function destroyCosts(bus, rounds) {
  const a = bus.connect();
  const holders = Array.from({ length: HOLDERS }, () => bus.connect());
  const destroy = [], notify = [];
  const ids = new Array(HOLDERS);
  for (let r = -2; r < rounds * 3; r++) {
    const id = node(r + 2);
    for (let i = 0; i < HOLDERS; i++) ids[i] = a.transfer(id, holders[i]);
    const t0 = now();
    a.destroy(id, { releaseHandles: true });
    const t1 = now();
    for (let i = 0; i < HOLDERS; i++) {
      const m = holders[i].recv();
      if (m?.type !== "node-destroy") throw new Error(`holder ${i} got ${m?.type ?? "nothing"}, not node-destroy`);
      holders[i].release(ids[i]);
    }
    const t2 = now();
    if (r >= 0) {
      destroy.push((t1 - t0) * 1e6);
      notify.push((t2 - t1) * 1e6);
    }
  }
  a.disconnect();
  for (const h of holders) h.disconnect();
  return [
    { name: `destroy of a node held by ${HOLDERS} peers`, value: summarize(destroy).median, unit: "ns", spread: summarize(destroy) },
    { name: `${HOLDERS} holders receive node-destroy and release`, value: summarize(notify).median, unit: "ns", spread: summarize(notify) },
  ];
}

/** Builds the hive; returns the parent and its children. */
function hive(bus) {
  const { peers, siblings } = HIVE;
  const parent = bus.connect();
  const children = Array.from({ length: peers }, () => bus.connect());
  const inParent = children.map((child) => child.transfer(4, parent));
  for (let i = 0; i < peers; i++) {
    for (let j = 0; j < siblings; j++) parent.transfer(inParent[(i + j + 1) % peers], children[i]);
  }
  return { parent, children };
}

async function hiveCosts(rounds, busOptions) {
  const times = [];
  for (let r = -1; r < rounds; r++) {
    const bus = await Bus.create(busOptions);
    const { parent, children } = hive(bus);
    const t0 = now();
    for (const child of children) child.disconnect();
    let destroyed = 0;
    for (let m = parent.recv(); m !== null; m = parent.recv()) if (m.type === "node-destroy") destroyed++;
    const t1 = now();
    if (destroyed !== HIVE.peers) throw new Error(`the hive's parent got ${destroyed} node-destroy, not ${HIVE.peers}`);
    if (r >= 0) times.push((t1 - t0) * 1e6);
    bus.close();
  }
  const total = summarize(times);
  const handles = HIVE.peers * (HIVE.siblings + 1);
  return [
    { name: `hive: ${HIVE.peers} peers × ${HIVE.siblings} handles disconnect`, value: total.median, unit: "ns", spread: total },
    { name: "hive: per handle torn down", value: total.median / handles, unit: "ns", spread: summarize(times.map((t) => t / handles)) },
  ];
}

export async function run({ rounds, windowMs, log }) {
  const bus = await Bus.create();
  const figures = [];
  const add = (list) => figures.push(...list.map((f) => ({ group: "capabilities", ...f })));
  log("  transfer");
  add(await transferCosts(bus, rounds));
  log("  16 handles");
  add(await attachCosts(bus, rounds, windowMs, log));
  log(`  destroy, ${HOLDERS} holders`);
  add(await destroyCosts(bus, rounds));
  bus.close();
  log(`  hive, ${HIVE.peers} × ${HIVE.siblings}`);
  add(await hiveCosts(Math.max(2, Math.ceil(rounds / 2)), { limits: { maxHandles: 1 << 18 } }));
  return { figures };
}
