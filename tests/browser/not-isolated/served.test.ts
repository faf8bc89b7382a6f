// A page served without COOP/COEP (the "not-isolated" project of
// vitest.browser.config.ts): no SharedArrayBuffer, so Bus.create() makes a
// private bus and Web Workers reach it through served peers (API.md
// "Sandboxed peers"; bus.serve / RemotePeer.connect).
import { describe, expect, it } from "vitest";
import { Bus, Bus1Error, type Peer } from "bus1-wasm";
import { run, until } from "../threads.js";

const remoteWorker = () => new Worker(new URL("../workers/remote.ts", import.meta.url), { type: "module" });

function codeOf(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (e) {
    return e instanceof Bus1Error ? e.code : String(e);
  }
}

describe("a page that is not cross-origin isolated", () => {
  it("has no shared memory: Bus.create() makes a private bus, { shared: true } is EINVAL, and wait() that could block is EOPNOTSUPP", async () => {
    expect(crossOriginIsolated).toBe(false);
    expect(typeof SharedArrayBuffer).toBe("undefined");
    const bus = await Bus.create();
    try {
      expect(bus.shared).toBe(false);
      const a = bus.connect();
      expect(codeOf(() => a.wait(1))).toBe("EOPNOTSUPP");
      expect(a.wait(0)).toBe(false);
      await expect(Bus.create({ shared: true })).rejects.toMatchObject({ code: "EINVAL" });
    } finally {
      bus.close();
    }
  });

  it("serves peers to 2 Web Workers, each sending 300 messages to an app peer on the main thread and getting every echo back in order", async () => {
    const count = 300, nWorkers = 2;
    const bus = await Bus.create();
    try {
      const app = bus.connect();
      const served = Array.from({ length: nWorkers }, () => bus.connect());
      const toApp = served.map((w) => app.transfer(4, w)); // each worker's handle to the app's node 4
      const toWorker = served.map((w) => w.transfer(8, app)); // the app's handle to each worker's node 8
      const threads = served.map((w, index) => {
        const { port1, port2 } = new MessageChannel();
        bus.serve(w, port1);
        return run(remoteWorker(), { port: port2, app: toApp[index], count, index }, [port2]);
      });
      for (const t of threads) {
        expect((await t.next()).facts).toEqual({
          isolated: false, sharedArrayBuffer: "undefined", shared: false, waitCode: "EOPNOTSUPP",
        });
      }
      // the app echoes every message to the worker that sent it, checking each worker's order
      const next = new Array(nWorkers).fill(0);
      let got = 0;
      const done = Promise.all(threads.map((t) => t.next(30_000)));
      done.catch(() => {}); // awaited below
      while (got < nWorkers * count) {
        const m = app.recv();
        if (!m) {
          await app.readable();
          continue;
        }
        const v = new DataView(m.payload.buffer, m.payload.byteOffset, 8);
        const w = v.getUint32(0, true), i = v.getUint32(4, true);
        expect(i).toBe(next[w]);
        next[w]++;
        got++;
        app.send(toWorker[w], m.payload);
        m.release();
      }
      const results = await done;
      for (const r of results) expect(r.echoes).toEqual(Array.from({ length: count }, (_, i) => i));
      expect(app.stats()).toMatchObject({ slices: 0, bytes: 0, liveSlices: 0 });
    } finally {
      bus.close();
    }
  });

  it("disconnects a served peer whose worker is terminated: the app gets node-destroy for the worker's node", async () => {
    const bus = await Bus.create();
    try {
      const app = bus.connect();
      const w: Peer = bus.connect();
      const toApp = app.transfer(4, w);
      const toWorker = w.transfer(8, app);
      const { port1, port2 } = new MessageChannel();
      const serving = bus.serve(w, port1, { livenessMs: 250 });
      const worker = remoteWorker();
      const t = run(worker, { port: port2, app: toApp, count: 0, index: 0 }, [port2]);
      await t.next();
      expect(bus.stats().peers).toBe(2);
      worker.terminate();
      let ended = "";
      serving.closed.then((why) => { ended = why; });
      // Chromium 153 fires no "close" on the port of a terminated worker: the liveness check finds it
      await until(() => ended !== "", 5_000, "the serving to end");
      await app.readable();
      const m = app.recv()!;
      expect([m.type, m.destination]).toEqual(["node-destroy", toWorker]);
      expect(bus.stats().peers).toBe(1);
    } finally {
      bus.close();
    }
  });
});
