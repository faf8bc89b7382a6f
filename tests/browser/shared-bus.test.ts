// A cross-origin isolated page: one shared bus, Web Workers attached to it
// (API.md "Bus"; SPEC §5 under real concurrency, with the checks of
// tests/ordering.ts that the Node and Deno suites use). Sized for two cores.
import { describe, expect, it } from "vitest";
import { Bus, Bus1Error } from "bus1-wasm";
import { checkStressEnd, stressWorld, type ReceiverResult, type SenderResult } from "../ordering.js";
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
    const bus = await Bus.create({ limits: { maxSlices: 1 << 20, maxInflightBytes: 1 << 30 }, maxMemoryBytes: 256 << 20 });
    try {
      const world = stressWorld(bus, 2, 3, 300, 7);
      const stress = (task: unknown) => run(new Worker(new URL("./workers/stress.ts", import.meta.url), { type: "module" }), task);
      const receivers = world.receiverTasks.map(stress);
      const senders = world.senderTasks.map(stress);
      const [sent, got] = await Promise.all([
        Promise.all(senders.map((t) => t.next<SenderResult>(60_000))),
        Promise.all(receivers.map((t) => t.next<ReceiverResult>(60_000))),
      ]);
      checkStressEnd(world, sent, got);
    } finally {
      bus.close();
    }
  }, 90_000);
});
