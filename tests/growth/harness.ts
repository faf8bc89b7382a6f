// Helpers of tests/growth-hostile.test.ts: private buses whose memory grows at
// chosen moments, and checks that survive a bus whose views went stale.
import { afterEach } from "vitest";
import { Bus } from "bus1-wasm";
// internals (not API): the core binding, to re-make stale views before closing and to inject growth
import { coreOf } from "../../dist/host-common/bus.js";

const open: Bus[] = [];

afterEach(async () => {
  for (const bus of open.splice(0)) {
    // a bus left with stale views would make close() loop in microtasks for ever (a finding):
    // re-make them first so that the suite itself cannot hang
    try {
      coreOf(bus).views();
    } catch {
      // closed already
    }
    try {
      bus.close();
    } catch {
      // closed already
    }
  }
});

/** A single-thread bus on private memory (starts at 2 pages and grows). */
export async function privateBus(options: Record<string, unknown> = {}): Promise<Bus> {
  const bus = await Bus.create({ shared: false, ...options } as any);
  open.push(bus);
  return bus;
}

/** Bytes the bus memory has now. */
export function memBytes(bus: Bus): number {
  return bus.handle.memory.buffer.byteLength;
}

/** Re-makes the host's views (what a fixed host would do on its own): lets a test go on after a finding. */
export function refreshViews(bus: Bus): void {
  coreOf(bus).views();
}

export function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** Where `a` and `b` first differ (-1: equal, same length). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * Runs `step(i)` for i = 0, 1, ... until one call grew the memory (the core
 * called memory.grow inside it); returns that i and what the step returned
 * or threw. Throws if no step grew it in `max` tries (the test could not
 * force growth: inconclusive, never a pass).
 */
export function stepUntilGrowth<T>(bus: Bus, step: (i: number) => T, max = 100_000):
  { i: number; value?: T; error?: unknown; before: number; after: number } {
  for (let i = 0; i < max; i++) {
    const before = memBytes(bus);
    let value: T | undefined, error: unknown;
    try {
      value = step(i);
    } catch (e) {
      error = e;
    }
    const after = memBytes(bus);
    if (after !== before) return { i, value, error, before, after };
    if (error !== undefined) throw error;
  }
  throw new Error(`no step grew the memory in ${max} tries: growth could not be forced`);
}

/**
 * Injected growth: from now on, each call of one of the core exports `names`
 * is followed at once by memory.grow(pages), as if the core had grown the
 * memory inside that call (a private memory's buffer detaches; nothing of the
 * host runs between the export's return and the grow). Returns a control:
 * `count` of growths so far, `off()` to stop.
 */
export function growAfter(bus: Bus, names: readonly string[], pages = 1): { readonly count: number; off(): void } {
  const core = coreOf(bus) as any;
  const real = core.ex;
  const memory: WebAssembly.Memory = bus.handle.memory;
  let count = 0, on = true;
  const wrapped: Record<string, unknown> = {};
  for (const k of Object.keys(real)) {
    const v = real[k];
    if (typeof v === "function" && names.includes(k)) {
      wrapped[k] = (...args: number[]) => {
        const rc = v(...args);
        if (on) {
          memory.grow(pages);
          count++;
        }
        return rc;
      };
    } else {
      wrapped[k] = v;
    }
  }
  core.ex = wrapped;
  return {
    get count() {
      return count;
    },
    off() {
      on = false;
      core.ex = real;
    },
  };
}

/** Lets pending promise reactions run (a few microtask turns and one task). */
export function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/**
 * Fills the heap of `bus` until at most about `margin` bytes of it are free,
 * with large messages queued to `sink` (each gets a pool chunk of its own,
 * held until `sink` receives them). Returns how many were queued. The bus's
 * own counters say what is free (bus.stats(): heapBytes − usedBytes); a
 * filler that grew the memory only moves the edge, and filling goes on.
 */
export function fillHeap(bus: Bus, sendToSink: (payload: Uint8Array) => void, margin: number): number {
  let n = 0;
  for (let tries = 0; tries < 64; tries++) {
    const st = bus.stats();
    const free = st.heapBytes - st.usedBytes;
    if (free <= margin + (80 << 10)) break;
    // a chunk costs the slice, its Message record, headers and an eighth more for its size class
    const size = Math.floor((free - margin) / 1.2);
    sendToSink(new Uint8Array(size));
    n++;
  }
  return n;
}
