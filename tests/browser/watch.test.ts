// A terminated Web Worker (API.md bus.watch; host-browser/index.ts "Exits",
// host-common/liveness.ts):
// browsers give a Worker no exit event, so the host learns of a thread's end
// from the Web Lock the thread held while it lived. Once it is gone, the
// references it held are closed: a peer only it held is disconnected.
import { describe, expect, it } from "vitest";
import { Bus, Bus1Error } from "bus1-wasm";
import { run, until } from "./threads.js";
// internals: what the watching of this thread holds (not part of the API)
import { watchingNow } from "../../dist/host-common/liveness.js";

const peerWorker = () => new Worker(new URL("./workers/peer.ts", import.meta.url), { type: "module" });

describe("bus.watch(worker) in a browser", () => {
  it("closes a terminated worker's references: its own peer is disconnected, so the main thread gets node-destroy for its node", async () => {
    const bus = await Bus.create();
    try {
      const main = bus.connect();
      const worker = peerWorker();
      bus.watch(worker);
      const t = run(worker, { handle: bus.handle, ref: main.ref });
      const { id } = await t.next(); // main holds a handle to the worker's node 4
      expect(bus.stats().threads).toBe(2);
      expect(bus.stats().peers).toBe(2);
      worker.terminate();
      await until(() => bus.stats().threads === 1, 10_000, "the worker's thread to be reclaimed");
      await main.readable();
      const m = main.recv()!;
      expect(m.type).toBe("node-destroy");
      expect(m.destination).toBe(id);
      // the worker's reference to main was closed, main's own is untouched
      expect(bus.stats().peers).toBe(1);
      main.release(id); // the handle to the destroyed node was main's own to drop
      expect(main.stats().handles).toBe(0);
      const again = main.transfer(4, main);
      main.send(again, new Uint8Array([7]));
      expect(main.recv()!.payload[0]).toBe(7);
    } finally {
      bus.close();
    }
  });

  it("reclaims a worker that was watched only after it started, and leaves a live worker alone", async () => {
    const bus = await Bus.create();
    try {
      const main = bus.connect();
      const live = peerWorker(), doomed = peerWorker();
      const tLive = run(live, { handle: bus.handle, ref: main.ref });
      const tDoomed = run(doomed, { handle: bus.handle, ref: main.ref });
      const [{ id: liveId }, { id: doomedId }] = [await tLive.next(), await tDoomed.next()];
      bus.watch(doomed);
      expect(bus.stats().threads).toBe(3);
      doomed.terminate();
      await main.readable();
      const m = main.recv()!;
      expect([m.type, m.destination]).toEqual(["node-destroy", doomedId]);
      await until(() => bus.stats().threads === 2, 10_000, "the terminated thread to be reclaimed");
      // the live worker still answers
      const back = main.transfer(8, main);
      main.send(liveId, new TextEncoder().encode("still there?"), { handles: [back] });
      expect(await tLive.next()).toMatchObject({ text: "still there?" });
      await main.readable();
      expect(main.recv()!.type).toBe("data");
    } finally {
      bus.close();
    }
  });

  it("is EINVAL for anything that is not a Worker", async () => {
    const bus = await Bus.create();
    try {
      for (const v of [{}, new MessageChannel().port1, Object.create(Worker.prototype)]) {
        let thrown: unknown;
        try {
          bus.watch(v);
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toBeInstanceOf(Bus1Error);
        expect((thrown as Bus1Error).code).toBe("EINVAL");
        expect((thrown as Bus1Error).message).toMatch(/worker must be a Worker/);
      }
    } finally {
      bus.close();
    }
  });

  it("keeps one watcher per bus however often it watches, and nothing once every watching bus is closed", async () => {
    expect(watchingNow().buses).toBe(0);
    const a = await Bus.create(), b = await Bus.create();
    const main = a.connect();
    const worker = peerWorker();
    a.watch(worker);
    a.watch(worker);
    b.watch(worker);
    expect(watchingNow()).toMatchObject({ buses: 2, listening: true });
    const t = run(worker, { handle: a.handle, ref: main.ref });
    await t.next();
    await until(() => watchingNow().following > 0, 10_000, "the worker's lock to be followed");
    a.close();
    expect(watchingNow()).toMatchObject({ buses: 1, listening: true });
    b.close();
    // the last watching bus let go: lock requests withdrawn, no timer, the channel closed one task later
    expect(watchingNow()).toMatchObject({ buses: 0, listening: false, following: 0 });
    await new Promise((r) => setTimeout(r, 0));
    expect(watchingNow()).toEqual({ buses: 0, listening: false, following: 0, timers: 0 });
  });

  it("still reclaims a terminated worker through one bus after another bus that watched it was closed", async () => {
    const bus = await Bus.create(), other = await Bus.create();
    try {
      const main = bus.connect();
      const worker = peerWorker();
      bus.watch(worker);
      other.watch(worker);
      const t = run(worker, { handle: bus.handle, ref: main.ref });
      const { id } = await t.next();
      other.close();
      expect(watchingNow().buses).toBe(1);
      worker.terminate();
      await main.readable();
      const m = main.recv()!;
      expect([m.type, m.destination]).toEqual(["node-destroy", id]);
      await until(() => bus.stats().threads === 1, 10_000, "the worker's thread to be reclaimed");
    } finally {
      bus.close();
    }
    expect(watchingNow().buses).toBe(0);
  });
});
