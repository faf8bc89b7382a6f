import { Worker } from "node:worker_threads";
import { Bus } from "bus1-wasm";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (let round = 0; round < 4; round++) {
  const bus = await Bus.create();
  const main = bus.connect();
  const peers = [0, 1, 2].map(() => bus.connect());
  const mainTargets = peers.map((p) => p.transfer(4, main));
  const ws = await Promise.all(peers.map((p, i) => {
    const targets = [main.transfer(4, p), ...peers.filter((q) => q !== p).map((q) => q.transfer(4, p))];
    const w = new Worker(new URL("./tests/workers/chaos.mjs", import.meta.url), { workerData: { handle: bus.handle, ref: p.ref, targets, seed: round * 10 + i + 1 } });
    w.on("error", (e) => console.log("worker error", e.message));
    bus.watch(w);
    return new Promise((r) => w.once("message", () => r(w)));
  }));
  console.log("round", round, "started");
  for (const p of peers) p.close();
  await sleep(20);
  const victim = ws[round % 3];
  const ex = new Promise((r) => victim.once("exit", r));
  await victim.terminate(); await ex;
  console.log("victim gone");
  await sleep(5);
  let broken = false;
  for (let i = 0; i < 200; i++) {
    try { main.send(mainTargets, new Uint8Array(16), { continue: true }); const m = main.recv(); if (m) m.release(); }
    catch (e) { console.log(e.message); broken = true; break; }
  }
  console.log("broken", broken);
  await Promise.all(ws.map((w) => w.terminate()));
  console.log("all terminated");
  bus.close();
}
