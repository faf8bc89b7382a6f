// bus.inspect() under concurrency: workers send, multicast, transfer,
// release and destroy as fast as they can while the main thread takes
// snapshots; every snapshot must be internally consistent (inspect-check.ts:
// every handle's node listed, node references equal to what their handles
// hold, queue lengths equal to the counters of in-flight handles and
// charged slices, one timestamp per transaction, nothing staged). Node
// workers: the thread-specific part of the inspect suite (inspect.test.ts is
// the portable one).

import { afterEach, describe, expect, it } from "vitest";
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { Bus, type BusSnapshot } from "bus1-wasm";
import { snapshotProblems } from "./inspect-check.js";

const workers: Worker[] = [];
const buses: Bus[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
  for (const b of buses.splice(0)) b.close();
});

interface Counts {
  sent: number;
  received: number;
  transferred: number;
  released: number;
  destroyed: number;
  errors: Record<string, number>;
}

/** The worker's next message, within `ms` (its "error" event rejects). */
function nextMessage<T>(w: Worker, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    once(w, "message").then(([m]) => m as T),
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`no message from a worker within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

describe("bus.inspect() with other threads at work", () => {
  /** Workers at work for `durationMs`, the main thread taking snapshots; every one checked. */
  async function run(churn: boolean) {
    const bus = await Bus.create({ shared: true });
    buses.push(bus);
    const n = 3;
    const ps = Array.from({ length: n }, () => bus.connect());
    // each peer owns node 0x10 and holds a handle to every other peer's; a
    // small cap on slices keeps the queues of a slower worker bounded (EDQUOT)
    const targets = ps.map((p, i) => ps.filter((_, j) => j !== i).map((q) => q.transfer(0x10, p)));
    for (const p of ps) p.reset({ limits: { maxSlices: 256 } });
    const durationMs = 1500;
    const started = ps.map((_, me) => {
      const w = new Worker(new URL("./workers/inspect-agent.mjs", import.meta.url), {
        workerData: {
          handle: bus.handle, refs: ps.map((p) => p.ref), me, targets: targets[me], durationMs, seed: 0x9e37 + me, churn,
        },
      });
      workers.push(w);
      bus.watch(w);
      return nextMessage(w, 20_000);
    });
    await Promise.all(started);
    // each worker's report is its next message: listen before saying go
    const done = workers.map((w) => nextMessage<Counts>(w, durationMs + 20_000));
    for (const w of workers) w.postMessage("go");
    let finished = false;
    const all = Promise.all(done).finally(() => { finished = true; });
    all.catch(() => {});

    let snapshots = 0, queued = 0, inflight = 0, multicasts = 0, nodes = 0, peers = 0, closed = 0;
    const t0 = performance.now();
    let longest = 0;
    while (!finished) {
      for (let k = 0; k < 4; k++) {
        const t = performance.now();
        const s: BusSnapshot = bus.inspect();
        longest = Math.max(longest, performance.now() - t);
        const bad = snapshotProblems(s);
        if (bad.length) throw new Error(`snapshot ${snapshots} is inconsistent:\n  ${bad.slice(0, 20).join("\n  ")}`);
        snapshots++;
        nodes = Math.max(nodes, s.nodes.length);
        peers = Math.max(peers, s.peers.length);
        if (s.peers.some((p) => p.state === "closed")) closed++;
        if (s.peers.some((p) => p.queue.length)) queued++;
        if (s.peers.some((p) => p.handles.some((h) => h.inflight))) inflight++;
        if (s.transactions.some((t) => t.receivers.length > 1)) multicasts++;
      }
      // let the workers' reports in
      await new Promise((r) => setTimeout(r, 0));
    }
    const counts = await all;
    const elapsed = performance.now() - t0;
    const last = bus.inspect();
    expect(snapshotProblems(last)).toEqual([]);

    // the workers did work, and the snapshots caught them at it
    for (const c of counts) {
      expect(c.sent).toBeGreaterThan(0);
      expect(c.received).toBeGreaterThan(0);
    }
    expect(snapshots).toBeGreaterThan(20);
    expect(queued).toBeGreaterThan(snapshots / 4);
    expect(inflight).toBeGreaterThan(0);
    expect(multicasts).toBeGreaterThan(0);
    expect(nodes).toBeGreaterThan(n);
    // the run is bounded: the workers' time plus their start
    expect(elapsed).toBeLessThan(durationMs + 20_000);
    expect(longest).toBeLessThan(5_000);
    // the workers' references are closed, the main thread's keep the peers
    const open = last.peers.filter((p) => p.state !== "closed");
    expect(open.map((p) => [p.state, p.references])).toEqual(ps.map(() => ["connected", 1]));
    expect(last.threads).toBe(1);
    return { peers, closed, last };
  }

  it("gives a consistent snapshot every time while workers send and move handles", async () => {
    await run(false);
  }, 60_000);

  it("gives a consistent snapshot every time while peers also connect and close", async () => {
    const seen = await run(true);
    expect(seen.peers).toBeGreaterThan(3);
    // the young peers closed last still own nodes that a worker's peer holds
    // (their node-destroy notifications wait in its queue): shown as closed
    const gone = seen.last.peers.filter((p) => p.state === "closed");
    expect(gone.length).toBeGreaterThan(0);
    for (const p of gone) expect(seen.last.nodes.some((nd) => nd.owner === p.id && nd.destroyed)).toBe(true);
  }, 60_000);
});
