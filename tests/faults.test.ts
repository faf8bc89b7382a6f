// Faults: workers that exit, or are terminated at any moment, maybe in the
// middle of a bus call. What the bus promises (docs/SPEC.md, "Faults"):
//  - a thread that exits between calls: the peer references it held are
//    closed, so peers only it used are disconnected (their nodes destroyed);
//  - a thread that dies inside a call: the bus is marked broken and every
//    call on every thread fails with ESHUTDOWN ("broken") from then on,
//    instead of hanging or reading what it left half-changed; it can still
//    be closed.
import { afterEach, describe, expect, it } from "vitest";
import { Worker } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";

const workers: Worker[] = [];
const buses: Bus[] = [];

afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.terminate()));
  for (const b of buses.splice(0)) b.close();
});

function startChaos(bus: Bus, ref: unknown, targets: number[], seed: number): Promise<Worker> {
  const w = new Worker(new URL("./workers/chaos.mjs", import.meta.url), {
    workerData: { handle: bus.handle, ref, targets, seed },
  });
  workers.push(w);
  bus.watch(w);
  return new Promise((resolve, reject) => {
    w.once("message", () => resolve(w));
    w.once("error", reject);
  });
}

/** Resolves once the worker has exited (at once if it already has). */
const exited = (w: Worker) => new Promise<void>((resolve) => {
  if (w.threadId === -1) resolve();
  else w.once("exit", () => resolve());
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `f` until it stops throwing EHOSTUNREACH-free results or the bus breaks; bounded. */
function isBroken(e: unknown): boolean {
  return e instanceof Bus1Error && e.code === "ESHUTDOWN" && /broken/.test(e.message);
}

describe("faults", () => {
  it("disconnects the peers of a worker that exits between calls", async () => {
    const bus = await Bus.create();
    buses.push(bus);
    const main = bus.connect();
    const p = bus.connect();
    const toP = p.transfer(4, main);
    const w = new Worker(`
      const { workerData, parentPort } = require("node:worker_threads");
      import("bus1-wasm").then(async ({ Bus }) => {
        const bus = await Bus.attach(workerData.handle);
        bus.adopt(workerData.ref);
        parentPort.postMessage("adopted");
      });`, { eval: true, workerData: { handle: bus.handle, ref: p.ref } });
    workers.push(w);
    bus.watch(w);
    await new Promise((r) => w.once("message", r));
    p.close(); // the worker now holds the only reference
    main.send(toP, new Uint8Array([1]));
    const gone = exited(w);
    await w.terminate();
    await gone;
    await sleep(10);
    const note = main.recv();
    expect(note?.type).toBe("node-destroy");
    expect(note?.destination).toBe(toP);
    expect(() => main.send(toP)).toThrow(expect.objectContaining({ code: "EHOSTUNREACH" }));
  });

  it("keeps every thread answering, or reports a broken bus, when workers are terminated at random moments", async () => {
    let brokenRounds = 0, cleanRounds = 0;
    for (let round = 0; round < 8; round++) {
      const bus = await Bus.create();
      buses.push(bus);
      const main = bus.connect();
      const peers = [0, 1, 2].map(() => bus.connect());
      // everyone can send to everyone's node 4 (and main's)
      const mainTargets = peers.map((p) => p.transfer(4, main));
      const ws = await Promise.all(peers.map((p, i) => {
        const targets = [main.transfer(4, p), ...peers.filter((q) => q !== p).map((q) => q.transfer(4, p))];
        return startChaos(bus, p.ref, targets, round * 10 + i + 1);
      }));
      for (const p of peers) p.close(); // the workers hold the only references
      await sleep(5 + ((round * 37) % 60));
      const victim = ws[round % 3];
      const gone = exited(victim);
      await victim.terminate();
      await gone;
      await sleep(5);
      // the main thread keeps working, or learns the bus is broken: never hangs
      const t0 = Date.now();
      let broken = false;
      for (let i = 0; i < 200; i++) {
        try {
          main.send(mainTargets, new Uint8Array(16), { continue: true });
          const m = main.recv();
          if (m) m.release();
        } catch (e) {
          if (isBroken(e)) { broken = true; break; }
          throw e;
        }
      }
      expect(Date.now() - t0).toBeLessThan(10_000);
      if (broken) {
        brokenRounds++;
        // every call now fails the same way, on every thread; closing works
        expect(() => main.query()).toThrow(expect.objectContaining({ code: "ESHUTDOWN" }));
      } else {
        cleanRounds++;
        // the victim's peer was disconnected: its node is gone
        const dead = mainTargets[round % 3];
        const r = main.send(dead, new Uint8Array(1), { continue: true });
        expect(r.errors[0]).toBe("EHOSTUNREACH");
      }
      await Promise.all(ws.map((w) => w.terminate()));
      workers.length = 0;
      bus.close();
      buses.length = 0;
    }
    console.log(`fault rounds: ${brokenRounds} broken, ${cleanRounds} clean`);
    expect(brokenRounds + cleanRounds).toBe(8);
  }, 120_000);
});
