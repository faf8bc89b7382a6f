// A receiving thread that is terminated after the core's recv returned and
// before its host took every record of the message (turning records into
// values runs outside any core call, e.g. a structured clone): the records
// must still be freed once the sender is done, as for a message that was
// dropped (SPEC §9, docs/ABI.md host objects).
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "node:worker_threads";
import { Bus } from "bus1-wasm";

const WORKER = new URL("./workers/objects-killed-in-recv.mjs", import.meta.url);
const live = new Set<Worker>();
afterEach(async () => {
  await Promise.all([...live].map((w) => w.terminate()));
  live.clear();
});

const once = (w: Worker, what: string) => new Promise<void>((resolve, reject) => {
  w.on("message", (m) => { if (m === what) resolve(); });
  w.once("error", reject);
});

describe("objects: a receiver killed while taking a message's records", () => {
  for (const senderLeaves of [false, true]) {
    it(`frees the records (the sender ${senderLeaves ? "lets go of the bus first" : "stays"})`, async () => {
      const bus = await Bus.create({ shared: true });
      try {
        const base = bus.stats();
        let warm = -1;
        // twice: the first time makes what a bus keeps once made (peer slots, pools); the second must leave nothing more
        for (let round = 0; round < 2; round++) {
          const a = bus.connect(), b = bus.connect();
          const toB = b.transfer(4, a); // a handle of a to the node of b
          const w = new Worker(WORKER, { workerData: { handle: bus.handle, ref: b.ref } });
          live.add(w);
          bus.watch(w);
          await once(w, "ready");
          b.close(); // the worker holds the only reference now
          // the sender is another thread when senderLeaves: its records become orphans when it goes
          let sender = a;
          let other: Bus | null = null;
          if (senderLeaves) {
            other = await Bus.attach(bus.handle);
            sender = other.adopt(a.ref);
            a.close();
          }
          const inTake = once(w, "in-take");
          sender.send([toB], new Uint8Array(4), { objects: [1, "s", { a: [1] }, null] });
          await inTake;
          await w.terminate();
          live.delete(w);
          await new Promise((r) => setTimeout(r, 50)); // the watch handler runs on the exit event
          sender.close();
          other?.close();
          if (!senderLeaves) a.close();
          const s = bus.stats();
          expect(s.threads).toBe(1);
          expect(s.peers).toBe(base.peers);
          expect(s.records).toBe(base.records);
          if (round === 0) warm = s.usedBytes;
          else expect(s.usedBytes).toBe(warm);
        }
      } finally {
        bus.close();
      }
    });
  }
});
