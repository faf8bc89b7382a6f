// The main side of the browser tests' Web Workers: each worker is started with
// one message (its task), answers with messages, and reports a failure as
// { error } (workers/task.ts). Every worker a test starts is terminated after it.
import { afterEach } from "vitest";

const started: Worker[] = [];

afterEach(() => {
  for (const w of started.splice(0)) w.terminate();
});

export interface Thread {
  readonly worker: Worker;
  /** The worker's next message, within `ms`. */
  next<T = any>(ms?: number): Promise<T>;
}

/** Hands `worker` its task (`data`, moving `transfer`); its messages come out of next(). */
export function run(worker: Worker, data: unknown, transfer: Transferable[] = []): Thread {
  started.push(worker);
  const queue: unknown[] = [];
  const waiting: { resolve: (v: any) => void; reject: (e: unknown) => void }[] = [];
  let failure: unknown = null;
  const fail = (e: unknown) => {
    failure ??= e;
    for (const p of waiting.splice(0)) p.reject(e);
  };
  worker.onmessage = (e: MessageEvent) => {
    const m = e.data;
    if (m && typeof m === "object" && "error" in m) return fail(new Error(`worker failed: ${m.error}`));
    const p = waiting.shift();
    if (p) p.resolve(m);
    else queue.push(m);
  };
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    fail(new Error(`worker error: ${e.message}`));
  };
  worker.postMessage(data, transfer);
  return {
    worker,
    next<T>(ms = 20_000): Promise<T> {
      if (queue.length) return Promise.resolve(queue.shift() as T);
      if (failure) return Promise.reject(failure);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no message from the worker within ${ms} ms`)), ms);
        waiting.push({
          resolve: (v) => { clearTimeout(timer); resolve(v); },
          reject: (e) => { clearTimeout(timer); reject(e); },
        });
      });
    },
  };
}

/** Resolves when `cond()` holds, looking every few milliseconds; fails after `ms`. */
export async function until(cond: () => boolean, ms = 5_000, what = "the condition"): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
