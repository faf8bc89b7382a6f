// A worker of tests/inspect-threads.test.ts: attaches to the bus, adopts
// every peer of the test and, until its deadline, keeps the bus busy as its
// own peer — unicasts and multicasts that carry handles (new nodes, and
// handles it received), transfers of handles to other peers, releases,
// destroys, and receives in batches so that queues fill and empty — while
// the main thread takes snapshots. Errors of the
// bus (a quota, a node destroyed meanwhile) are counted, not fatal.
// With `churn`, it also connects short-lived peers of its own that give its
// peer a handle and are closed again, so peers come and go (and a closed
// peer's node outlives it) while snapshots are taken.
// workerData: { handle, refs, me, targets, durationMs, seed, churn }. Posts
// { ready: true } once attached, starts on the main thread's next message,
// and posts its counts when done.
import { workerData, parentPort } from "node:worker_threads";
import { Bus, Bus1Error, HANDLE_INVALID } from "bus1-wasm";
import { xorshift32 } from "./xorshift.mjs";

const { handle, refs, me, targets, durationMs, seed, churn } = workerData;
const bus = await Bus.attach(handle);
const peers = refs.map((r) => bus.adopt(r));
const peer = peers[me];
const others = peers.filter((_, i) => i !== me);

const rnd = xorshift32(seed);
const pick = (list) => list[Math.floor(rnd() * list.length)];

const payload = new Uint8Array(24).fill(me);
let fresh = 0x100000 * (me + 1);
/** Nodes this peer made (caller-chosen IDs), not yet destroyed. */
const mine = [];
/** Handles to other peers' nodes it received, not yet released. */
const got = [];
const counts = { sent: 0, received: 0, transferred: 0, released: 0, destroyed: 0, errors: {} };

function attach() {
  const handles = [];
  if (rnd() < 0.5) {
    fresh += 8;
    mine.push(fresh);
    handles.push(fresh);
  }
  if (got.length && rnd() < 0.4) handles.push(pick(got));
  return handles;
}

function dropGot(id) {
  const i = got.indexOf(id);
  if (i >= 0) got.splice(i, 1);
}

/** A handle ID it already keeps track of: a second reference to it is given back at once. */
function known(id) {
  return got.includes(id) || mine.includes(id) || targets.includes(id);
}

/** Every reference of `id` goes (others may have transferred it more than once). */
function releaseAll(id) {
  for (;;) {
    try {
      peer.release(id);
      counts.released++;
    } catch {
      return;
    }
  }
}

function receive(max) {
  for (let n = 0; n < max; n++) {
    const m = peer.recv();
    if (!m) return;
    counts.received++;
    if (m.type === "data") {
      try {
        for (const h of m.handles) {
          if (h === HANDLE_INVALID) continue;
          if (known(h)) peer.release(h);
          else got.push(h);
        }
      } finally {
        m.release();
      }
    } else if (m.type === "node-destroy" && !targets.includes(m.destination)) {
      releaseAll(m.destination);
      dropGot(m.destination);
    }
  }
}

function step() {
  const r = rnd();
  if (r < 0.45) {
    peer.send(pick(targets), payload, { handles: attach() });
    counts.sent++;
  } else if (r < 0.65) {
    const a = pick(targets);
    const b = pick(targets.filter((t) => t !== a));
    peer.send(b === undefined ? [a] : [a, b], payload, { handles: attach() });
    counts.sent++;
  } else if (r < 0.75) {
    const h = got.length && rnd() < 0.5 ? pick(got) : mine.length ? pick(mine) : null;
    if (h !== null) {
      peer.transfer(h, pick(others));
      counts.transferred++;
    }
  } else if (r < 0.82) {
    if (mine.length) {
      const id = mine.splice(Math.floor(rnd() * mine.length), 1)[0];
      peer.destroy(id, { releaseHandles: true });
      counts.destroyed++;
    }
  } else if (r < 0.9) {
    if (got.length) {
      const id = got.splice(Math.floor(rnd() * got.length), 1)[0];
      peer.release(id);
      counts.released++;
    }
  } else {
    receive(2);
  }
  // keep what it holds bounded
  while (got.length > 48) {
    peer.release(got.shift());
    counts.released++;
  }
  while (mine.length > 48) {
    peer.destroy(mine.shift(), { releaseHandles: true });
    counts.destroyed++;
  }
}

/** Short-lived peers of this thread, oldest first. */
const young = [];

/** A new peer gives this worker's peer a handle and a message, and the oldest young peer goes. */
function churnOnce() {
  const p = bus.connect();
  young.push(p);
  const id = p.transfer(0x40, peer);
  peer.send(id, payload);
  if (young.length > 6 || rnd() < 0.3) young.shift().close();
}

// every worker attached: the main thread says when to start
parentPort.postMessage({ ready: true });
await new Promise((resolve) => parentPort.once("message", resolve));

const end = Date.now() + durationMs;
while (Date.now() < end) {
  // a batch of operations, then what arrived meanwhile: queues fill and empty
  for (let k = 0; k <= 16; k++) {
    try {
      if (k < 16) step();
      else receive(48);
      if (churn && k % 4 === 0) churnOnce();
    } catch (e) {
      if (!(e instanceof Bus1Error)) throw e;
      counts.errors[e.code] = (counts.errors[e.code] ?? 0) + 1;
    }
  }
}
// what is left for it (the others may still be sending)
try {
  receive(Infinity);
} catch (e) {
  if (!(e instanceof Bus1Error)) throw e;
}
for (const p of young) p.close();
for (const p of peers) p.close();
bus.close();
parentPort.postMessage(counts);
