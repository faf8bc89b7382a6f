/**
 * Runs fuzz jobs in a worker thread (tests/fuzz/worker.mjs), watched from
 * here: a run that makes no progress for `silenceMs` (a call that hangs, a
 * lock that is never given back) or a worker that dies is reported as a
 * failure of that seed, the worker is terminated and a fresh one takes the
 * next job. Used by the CLI (run.mjs) and by tests/fuzz.test.ts.
 */
import { Worker } from "node:worker_threads";
import { RECORDER_BYTES, readRecorder } from "./fuzzer.mjs";

const WORKER = new URL("./worker.mjs", import.meta.url);

/**
 * jobs: an iterable of { seed, kind, steps, hostile?, keepGoing?, trace? }
 * (a generator may stop when a time budget is spent). Calls onResult(result)
 * after each job and resolves with all results.
 */
export async function runIsolated(jobs, { silenceMs = 20_000, onResult, onTrace } = {}) {
  const results = [];
  let worker = null;
  const spawn = () => new Worker(WORKER);
  try {
    for (const job of jobs) {
      if (!worker) worker = spawn();
      const w = worker;
      const recorder = new SharedArrayBuffer(RECORDER_BYTES);
      const result = await new Promise((resolve) => {
        let lastStep = 0;
        let timer = null;
        const finish = (r, dead) => {
          clearTimeout(timer);
          w.off("message", onMessage);
          w.off("error", onError);
          w.off("exit", onExit);
          if (dead) {
            worker = null;
            w.terminate();
          }
          resolve(r);
        };
        const lost = (message) => ({
          ok: false, seed: job.seed, kind: job.kind, steps: lastStep,
          failure: {
            step: lastStep + 1, message, history: readRecorder(recorder),
            replay: `node tests/fuzz/run.mjs --seed ${job.seed} --kind ${job.kind}${job.steps ? ` --steps ${job.steps}` : ""}` +
              `${job.hostile === false ? " --plain" : ""}${job.keepGoing ? " --keep-going" : ""} --trace`,
          },
        });
        const arm = () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            const history = readRecorder(recorder);
            const at = /^#(\d+)/.exec(history[history.length - 1] ?? "");
            if (at) lastStep = Number(at[1]) - 1;
            finish(lost(`no progress for ${silenceMs / 1000} s: a hang (the last call listed never returned)`), true);
          }, silenceMs);
        };
        const onMessage = (m) => {
          arm();
          if (m.type === "progress") lastStep = m.step;
          else if (m.type === "trace") onTrace?.(m.line);
          else if (m.type === "result") finish(m.result, false);
        };
        const onError = (e) => finish(lost(`the fuzz worker died: ${e?.stack ?? e}`), true);
        const onExit = (code) => finish(lost(`the fuzz worker exited (${code})`), true);
        w.on("message", onMessage);
        w.on("error", onError);
        w.on("exit", onExit);
        arm();
        w.postMessage({ ...job, trace: !!job.trace, recorder });
      });
      results.push(result);
      onResult?.(result);
    }
  } finally {
    if (worker) await worker.terminate();
  }
  return results;
}
