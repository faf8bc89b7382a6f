// Runs fuzz jobs for tests/fuzz/isolate.mjs, one at a time, in a worker
// thread: a hang or a crash then costs the worker, not the process that
// watches it. Messages out: { type: "progress", step }, { type: "trace", line },
// { type: "result", result }.
import { parentPort } from "node:worker_threads";
import { runFuzz } from "./fuzzer.mjs";

parentPort.on("message", async (job) => {
  const result = await runFuzz({
    ...job,
    progress: (step) => parentPort.postMessage({ type: "progress", step }),
    trace: job.trace ? (line) => parentPort.postMessage({ type: "trace", line }) : undefined,
  });
  parentPort.postMessage({ type: "result", result });
});
parentPort.postMessage({ type: "ready" });
