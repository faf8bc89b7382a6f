// A worker of the ordering stress test (tests/concurrency.test.ts): runs its
// role (tests/workers/stress-agent.mjs) and posts what it logged.
import { workerData, parentPort } from "node:worker_threads";
import { Bus } from "bus1-wasm";
import { runStress } from "./stress-agent.mjs";

parentPort.postMessage(await runStress(Bus, workerData));
