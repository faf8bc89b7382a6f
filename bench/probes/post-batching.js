// What a port message costs per 64 KiB buffer it carries, by how many it
// carries (why a served peer puts up to 16 large payloads in one post:
// host-common/batch.ts OWN): `node bench/probes/post-batching.js`. Not part
// of `npm run bench`.
//
// The main thread fills 64 KiB buffers and posts them to a worker, `per` to
// a port message (each buffer in the transfer list); the worker reads each
// and gives them back 16 at a time, and the main thread fills those again,
// as the served peer does with the buffers its plugin gives back. It sends
// in batches of 64 messages with a turn of the event loop after each, for
// 1.5 s per setting, and prints the time and the process's CPU per buffer.
import { MessageChannel, Worker, isMainThread, workerData } from "node:worker_threads";

const SIZE = 65536;
const PER_POST = [1, 2, 4, 8, 16, 1, 4, 8];

if (!isMainThread) {
  const { port } = workerData;
  let back = [], n = 0;
  port.on("message", (m) => {
    if (m === "end") {
      port.postMessage(["n", n]);
      n = 0;
      return;
    }
    for (const b of m[1]) {
      if (new Uint8Array(b)[0] === 7) n++;
      back.push(b);
    }
    if (back.length >= 16) {
      port.postMessage(back, back);
      back = [];
    }
  });
} else {
  const { port1, port2 } = new MessageChannel();
  const worker = new Worker(new URL(import.meta.url), { workerData: { port: port2 }, transferList: [port2] });
  const spares = [];
  let counted = null;
  port1.on("message", (m) => {
    if (m[0] === "n") counted(m[1]);
    else for (const b of m) spares.push(b);
  });
  const src = new Uint8Array(SIZE).fill(7);
  const turn = () => new Promise((resolve) => setImmediate(resolve));
  for (const per of PER_POST) {
    const t0 = performance.now(), c0 = process.cpuUsage();
    let sent = 0;
    while (performance.now() - t0 < 1500) {
      for (let i = 0; i < 64; i += per) {
        const list = [];
        for (let j = 0; j < per; j++) {
          const b = spares.pop() ?? new ArrayBuffer(SIZE);
          new Uint8Array(b).set(src);
          list.push(b);
        }
        port1.postMessage([[1, 2, 3], list, null], list);
      }
      sent += 64;
      await turn();
    }
    const got = new Promise((resolve) => { counted = resolve; });
    port1.postMessage("end");
    const n = await got;
    const ms = performance.now() - t0, cpu = process.cpuUsage(c0);
    console.log(`${String(per).padStart(2)} per post: ${((ms * 1000) / sent).toFixed(2)} µs per buffer, ` +
      `process CPU ${((cpu.user + cpu.system) / sent).toFixed(2)} µs per buffer (${n} read)`);
  }
  await worker.terminate();
}
