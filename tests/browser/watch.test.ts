// A terminated Web Worker (API.md bus.watch; host-browser/index.ts "Exits"):
// browsers give a Worker no exit event, so the host learns of a thread's end
// from the Web Lock the thread held while it lived. Once it is gone, the
// references it held are closed: a peer only it held is disconnected.
import { describe, expect, it } from "vitest";
import { Bus, Bus1Error } from "bus1-wasm";
import { run, until } from "./threads.js";

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
});
