// A cross-origin isolated page: one shared bus, Web Workers attached to it
// (API.md "Bus"; SPEC §5 under real concurrency, with the checks of
// tests/ordering.ts that the Node and Deno suites use). Sized for two cores.
import { describe, expect, it } from "vitest";
import { Bus, Bus1Error } from "bus1-wasm";
import { checkOrdering, plan, type Entry } from "../ordering.js";
import { run } from "./threads.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b.slice());

describe("a shared bus and Web Workers", () => {
  it("is what Bus.create() makes on an isolated page, and a worker attaches to it and adopts a peer", async () => {
    expect(crossOriginIsolated).toBe(true);
    const bus = await Bus.create();
    try {
      expect(bus.shared).toBe(true);
      const main = bus.connect();
      const t = run(new Worker(new URL("./workers/peer.ts", import.meta.url), { type: "module" }),
        { handle: bus.handle, ref: main.ref });
      const { id, canBlock } = await t.next();
      expect(canBlock).toBe(true); // wait(1) in the worker timed out instead of throwing
      expect(bus.stats().threads).toBe(2);
      // main sends with a handle to its own node 8 for the reply, and an object
      const back = main.transfer(8, main);
      main.send(id, enc("hello"), { handles: [back], objects: [{ from: "main" }] });
      // objects reach only receivers in the sending thread (no cloner in browsers)
      expect(await t.next()).toEqual({ text: "hello", objects: ["EOPNOTSUPP"] });
      await main.readable();
      const reply = main.recv()!;
      expect(dec(reply.payload)).toBe("re: hello");
      expect(reply.objects[0]).toBeInstanceOf(Bus1Error);
      expect((reply.objects[0] as Bus1Error).code).toBe("EOPNOTSUPP");
      expect((reply.objects[0] as Bus1Error).message).toMatch(/browser host copies no objects between threads/);
      reply.release();
      main.send(id, enc("bye"));
      expect(await t.next()).toBe("closed");
      expect(bus.stats().threads).toBe(1);
    } finally {
      bus.close();
    }
  });

  it("delivers every multicast of 2 sender workers to 3 receiver workers exactly once, per sender in order, in one order all receivers agree on, respecting causality", async () => {
    const nSenders = 2, nReceivers = 3, perSender = 300;
    const bus = await Bus.create({ limits: { maxSlices: 1 << 20, maxInflightBytes: 1 << 30 }, maxMemoryBytes: 256 << 20 });
    try {
      const startBytes = bus.handle.memory.buffer.byteLength;
      const R = Array.from({ length: nReceivers }, () => bus.connect({ user: 1 }));
      const S = Array.from({ length: nSenders }, (_, i) => bus.connect({ user: 2 + i }));
      const sTargets = S.map((s) => R.map((r) => r.transfer(4, s)));
      const rTargets = R.map((ri) => R.map((rj) => rj.transfer(4, ri)));
      const baseline = R.map((r) => r.stats());
      const ctl = new SharedArrayBuffer(4 * 32);
      const plans = plan(nSenders, nReceivers, perSender, 7);
      const stress = () => new Worker(new URL("./workers/stress.ts", import.meta.url), { type: "module" });
      const receivers = R.map((r, i) => run(stress(), {
        handle: bus.handle, role: "receiver", index: i, ref: r.ref, targets: rTargets[i], ctl, replyRate: 0.2,
        seed: 100 + i, nSenders, nReceivers,
      }));
      const senders = S.map((s, i) => run(stress(), {
        handle: bus.handle, role: "sender", index: i, ref: s.ref, targets: sTargets[i], ctl, plan: plans[i], seed: i + 1,
      }));
      const [sent, got] = await Promise.all([
        Promise.all(senders.map((t) => t.next<{ index: number; completed: number[] }>(60_000))),
        Promise.all(receivers.map((t) => t.next<{ index: number; log: Entry[] }>(60_000))),
      ]);
      const logs: Entry[][] = [], completed: number[][] = [];
      for (const r of got) logs[r.index] = r.log;
      for (const s of sent) completed[s.index] = s.completed;
      checkOrdering(logs, completed, plans);
      // nothing leaked: every slice released, handles back to where they were
      R.forEach((r, i) => {
        expect(r.stats()).toMatchObject({ slices: 0, bytes: 0, objects: 0, liveSlices: 0, handles: baseline[i].handles });
      });
      // the 64 KiB payloads made the shared memory grow while the workers used it
      expect(bus.handle.memory.buffer.byteLength).toBeGreaterThan(startBytes);
    } finally {
      bus.close();
    }
  }, 90_000);
});
