// A worker of tests/fuzz-threads.test.ts: the fuzzer of tests/fuzz/fuzzer.mjs
// in agent mode, on peers this thread holds alone on a shared bus, until it
// is told to stop or terminated (at any moment, maybe inside a bus call).
//
// workerData: { handle, refs: [peer.ref], targets: [[handle IDs] per ref], seed }
// Messages out: { type: "adopted" } (the main thread may now close its references),
// { type: "progress", step } after every burst, { type: "result", result } at the end.
// Messages in: "go" (start), "stop" (finish cleanly: close every reference, let go of the bus).
import { workerData, parentPort } from "node:worker_threads";
import { Bus, Bus1Error } from "bus1-wasm";
import { Fuzzer } from "../fuzz/fuzzer.mjs";

const { handle, refs, targets, seed } = workerData;
let go, stop = false;
const started = new Promise((resolve) => { go = resolve; });
parentPort.on("message", (m) => {
  if (m === "go") go();
  else if (m === "stop") {
    stop = true;
    go();
  }
});

let bus = null, fuzzer = null;
try {
  bus = await Bus.attach(handle);
  const peers = refs.map((r) => bus.adopt(r));
  parentPort.postMessage({ type: "adopted" });
  await started;
  fuzzer = new Fuzzer({ agent: true, bus, refs: peers, targets, seed });
  await fuzzer.init();
  while (!stop) {
    const going = await fuzzer.steps(16);
    parentPort.postMessage({ type: "progress", step: fuzzer.stepNo });
    if (!going) break;
    await new Promise((r) => setImmediate(r));
  }
  await fuzzer.finish(); // closes every reference it holds (also after a failure: between calls)
  parentPort.postMessage({ type: "result", result: fuzzer.result() });
  if (!fuzzer.broken) bus.close();
} catch (e) {
  // outside the fuzzer's calls: attaching or adopting on a bus that broke meanwhile is legitimate
  const broken = e instanceof Bus1Error && e.code === "ESHUTDOWN" && /broken/.test(e.message);
  parentPort.postMessage({
    type: "result",
    result: broken ? { ok: true, seed, kind: "agent", steps: fuzzer?.stepNo ?? 0, broken: e.message }
      : { ok: false, seed, kind: "agent", steps: fuzzer?.stepNo ?? 0,
          failure: { step: fuzzer?.stepNo ?? 0, message: `the agent threw ${e?.stack ?? e}`, history: fuzzer?.historyLines() ?? [], replay: "" } },
  });
}
