// What the measuring threads share: the first payload byte that says what a
// message is, and how the main thread starts a worker and waits for it.
//
// Every sink worker (bench/workers/) speaks the same protocol over its own
// transport: DATA is counted, PING is answered at once with a PING, END is
// answered with the count and bytes since the last END (two float64s), QUIT
// ends the worker.

import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { Bus1Error } from "bus1-wasm";
import { now, sleep, summarize } from "./harness.js";

export const DATA = 0, END = 1, PING = 2, QUIT = 3;

/** `size` bytes whose first byte is `kind` (a 0-byte payload has no kind). */
export function message(kind, size = 8) {
  const bytes = new Uint8Array(size);
  if (size > 0) bytes[0] = kind;
  return bytes;
}

/** The END reply: messages and payload bytes counted. */
export function summary(count, bytes) {
  return new Uint8Array(new Float64Array([count, bytes]).buffer);
}

export function readSummary(payload) {
  const f64 = new Float64Array(payload.slice(0, 16).buffer);
  return { count: f64[0], bytes: f64[1] };
}

/** Throws unless a worker counted every message sent. */
export function checkCount(payload, sent, who) {
  const { count } = readSummary(payload);
  if (count !== sent) throw new Error(`${who}: sent ${sent} messages, a worker counted ${count}`);
}

/**
 * The sender side of a throughput window: calls `sendOne()` in batches of
 * `batch` until `ms` have passed. Returns the count and the start time.
 */
export function flood(ms, batch, sendOne) {
  let sent = 0;
  const start = now();
  do {
    for (let i = 0; i < batch; i++) sendOne();
    sent += batch;
  } while (now() - start < ms);
  return { sent, start };
}

/**
 * The sink side: a handler for each message's payload that counts DATA and
 * answers PING and END through `reply(bytes)`. Returns false for QUIT (or
 * anything else), when the sink should stop. It reads the payload before it
 * returns, so the caller may release the message right after. With
 * `{ cpu: true }` the END reply carries a third float64: the CPU time of this
 * thread since the last END, in milliseconds (threadCpuMs).
 */
export function sink(reply, { cpu: withCpu = false } = {}) {
  const pong = message(PING);
  let count = 0, bytes = 0;
  let cpu = withCpu ? threadCpuMs() : 0;
  return (payload) => {
    const kind = payload.length > 0 ? payload[0] : -1;
    if (kind === DATA) {
      count++;
      bytes += payload.length;
    } else if (kind === PING) {
      reply(pong);
    } else if (kind === END) {
      if (withCpu) {
        const was = cpu;
        cpu = threadCpuMs();
        reply(new Uint8Array(new Float64Array([count, bytes, cpu - was]).buffer));
      } else {
        reply(summary(count, bytes));
      }
      count = bytes = 0;
    } else {
      return false;
    }
    return true;
  };
}

/**
 * Starts bench/workers/`file` and resolves once it posts "up" on its
 * parentPort. `bus`, when given, watches it (its peer references close when it
 * exits).
 */
export async function startWorker(file, workerData, { transferList = [], bus = null } = {}) {
  const worker = new Worker(new URL(`./workers/${file}`, import.meta.url), { workerData, transferList });
  bus?.watch(worker);
  await new Promise((resolve, reject) => {
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`${file} exited with code ${code} before it was up`)));
    worker.once("message", (m) => (m === "up" ? resolve() : reject(new Error(`${file} said ${m}`))));
  });
  worker.removeAllListeners("exit");
  worker.removeAllListeners("error");
  worker.on("error", (e) => {
    process.stderr.write(`bench: ${file} failed: ${e?.stack ?? e}\n`);
    process.exitCode = 1;
  });
  return worker;
}

/** Resolves with the worker's exit code once it has exited. */
export function exited(worker) {
  return new Promise((resolve) => {
    if (worker.threadId === -1) resolve(0);
    else worker.once("exit", resolve);
  });
}

/** Blocks until `peer` (bus1) has a message and returns it. */
export function recvBlocking(peer, timeoutMs = 30_000) {
  for (;;) {
    const m = peer.recv();
    if (m) return m;
    if (!peer.wait(timeoutMs)) throw new Error(`no message for ${timeoutMs / 1000} s: a worker is stuck`);
  }
}

/**
 * bus1 send that waits out a full receiver: on EDQUOT (the receiver's quota
 * is used up by messages it has not released yet) sleeps 0.1 ms and tries
 * again. Returns how many times it slept.
 */
export function sendPatiently(peer, to, payload) {
  for (let waits = 0; ; waits++) {
    try {
      peer.send(to, payload);
      return waits;
    } catch (e) {
      if (!(e instanceof Bus1Error) || e.code !== "EDQUOT") throw e;
      sleep(0.1);
    }
  }
}

/**
 * Closes each transport (its close() tells its workers to quit and waits for
 * them); one that has not closed within 10 s has its workers terminated.
 */
export async function closeAll(transports, log) {
  for (const t of transports) {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("its workers did not quit within 10 s")), 10_000);
    });
    try {
      await Promise.race([t.close(), late]);
    } catch (e) {
      log(`  ${t.name}: ${e?.message ?? e}; terminating its workers`);
      await Promise.all(t.workers.map((w) => w.terminate()));
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * Milliseconds of CPU this thread has used (Linux: /proc/thread-self/schedstat,
 * in nanoseconds); elsewhere the time its event loop has been busy
 * (performance.eventLoopUtilization), which also counts the time the thread
 * waits for a core. Differences of it say what a thread spent on a window.
 */
export function threadCpuMs() {
  if (schedstat) {
    try {
      return Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e6;
    } catch {
      schedstat = false;
    }
  }
  return performance.eventLoopUtilization().active;
}
let schedstat = true;

/** sink() whose END reply carries this thread's CPU time: the served-peer group (served-peer.js) reads it to say which thread bounds a case. */
export function busySink(reply) {
  return sink(reply, { cpu: true });
}

/** The CPU time (ms) of a busySink's END reply. */
export function readBusy(payload) {
  return new Float64Array(payload.slice(0, 24).buffer)[2];
}

/** Round-trip times of one window; its figure is the median trip. */
export class Trips {
  #start = now();
  #times = [];

  add(ms) {
    this.#times.push(ms * 1e6);
  }

  count() {
    return this.#times.length;
  }

  elapsed() {
    return now() - this.#start;
  }

  median() {
    return summarize(this.#times).median;
  }
}

/**
 * Ping-pong over a MessagePort for `ms`: `post(ping)`, wait for the answer on
 * `port`, again. Resolves with the window's Trips.
 */
export function portPingPong(port, post, ping, ms) {
  return new Promise((resolve) => {
    const trips = new Trips();
    let t = now();
    const onPong = () => {
      trips.add(now() - t);
      if (trips.elapsed() >= ms) {
        port.off("message", onPong);
        return resolve(trips);
      }
      t = now();
      post(ping);
    };
    port.on("message", onPong);
    post(ping);
  });
}
