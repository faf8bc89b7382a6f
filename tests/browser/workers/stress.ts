// A Web Worker of the ordering stress test (tests/browser/shared-bus.test.ts):
// the roles of tests/workers/stress-agent.mjs, shared with the Node and Deno
// suites. Receivers block in peer.wait() between messages: a dedicated worker may.
import { Bus } from "bus1-wasm";
import { runStress } from "../../workers/stress-agent.mjs";
import { onTask } from "./task.js";

onTask(async (data, post) => post(await runStress(Bus, data)));
