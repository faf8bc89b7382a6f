import { Worker } from "node:worker_threads";
import { Bus } from "bus1-wasm";
const bus = await Bus.create();
const main = bus.connect();
const p = bus.connect();
const toP = p.transfer(4, main);
const w = new Worker(new URL("./tests/workers/chaos.mjs", import.meta.url), { workerData: { handle: bus.handle, ref: p.ref, targets: [], seed: 1 } });
w.on("error", (e) => console.log("worker error", e));
bus.watch(w);
await new Promise((r) => w.once("message", r));
console.log("adopted");
p.close();
setTimeout(async () => { console.log("terminating"); await w.terminate(); console.log("terminated"); setTimeout(() => { 
  try { console.log(main.recv()); } catch (e) { console.log(e.message); }
  bus.close(); }, 50); }, 100);
