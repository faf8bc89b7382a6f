// The Deno host itself (run by vitest.deno.config.ts, in Deno): the suite
// really runs in Deno on host-deno, and a Deno program that uses the
// package needs no permission but --allow-read.
import { describe, expect, it } from "vitest";
import { Bus, Bus1Error } from "bus1-wasm";
// internals: which platform is installed (not part of the API)
import { installPlatform, requirePlatform } from "../../dist/host-common/platform.js";

declare const Deno: {
  version: { deno: string };
  execPath(): string;
  Command: new (cmd: string, o: { args: string[]; cwd?: string; env?: Record<string, string>; stdout: "piped"; stderr: "piped" }) => {
    output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }>;
  };
};

const fixtures = new URL("./fixtures/", import.meta.url).pathname;

/** Runs a fixture in a new Deno process with `permissions`; its JSON line, or a failure that shows its stderr. */
async function runFixture(permissions: string[], fixture = "read-only.mjs"): Promise<Record<string, unknown>> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, fixtures + fixture],
    env: { DENO_NO_UPDATE_CHECK: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await cmd.output();
  const out = new TextDecoder().decode(stdout).trim();
  expect(code, `deno run ${permissions.join(" ")} exited ${code}: ${new TextDecoder().decode(stderr)}`).toBe(0);
  return JSON.parse(out.split("\n").pop()!);
}

describe("the Deno host", () => {
  it("is what the package resolves to here: the suite runs in Deno", async () => {
    expect(typeof Deno).toBe("object");
    expect(Deno.version.deno).toMatch(/^\d+\.\d+/);
    expect(requirePlatform().name).toBe("deno");
    const bus = await Bus.create();
    expect(bus.shared).toBe(true);
    bus.close();
  });

  it("runs a program with workers, object clones and a watched terminated worker under --allow-read alone", async () => {
    const out = await runFixture(["--allow-read"]);
    expect(out).toEqual({
      shared: true,
      worker: "sent",
      threadsBefore: 2,
      payload: "from a Deno worker",
      // a Map is cloned across threads; a function cannot be, and arrives as EOPNOTSUPP in its place
      objects: [[[1, "one"]], "EOPNOTSUPP"],
      threadsAfter: 1,
    });
  }, 20_000);

  it("keeps one watcher per watching bus, reclaims a terminated worker, and keeps nothing once its buses are closed: the process exits at once", async () => {
    const out = await runFixture(["--allow-read"], "watch-exit.mjs");
    expect(out.error).toBeUndefined();
    const idle = { buses: 0, listening: false, following: 0, timers: 0 };
    expect(out).toMatchObject({
      attached: "held",
      threadsAfterTerminate: 1,
      threadsWithSecond: 2,
      steps: {
        // two buses watch (one of them twice): two watchers, one channel for the thread
        watching: { buses: 2, listening: true },
        oneClosed: { buses: 1 },
        following: { buses: 1, following: 1 },
        // the last watching bus closed while its worker lived: lock request withdrawn, channel let go of…
        justClosed: { buses: 0, listening: false, following: 0 },
        // … and closed one task later
        allClosed: idle,
      },
    });
    // a watch used to keep a channel open for a second after it began
    expect(out.exitMs as number).toBeLessThan(500);
  }, 20_000);

  it("refuses watch with EOPNOTSUPP saying the host cannot watch workers, where it has no watcher", async () => {
    const deno = requirePlatform();
    const bus = await Bus.create();
    installPlatform({ ...deno, watcher: undefined });
    let thrown: unknown;
    try {
      bus.watch({}); // refused before the worker is looked at
    } catch (e) {
      thrown = e;
    } finally {
      installPlatform(deno);
      bus.close();
    }
    expect(thrown).toBeInstanceOf(Bus1Error);
    expect((thrown as Bus1Error).code).toBe("EOPNOTSUPP");
    expect((thrown as Bus1Error).message).toBe("watch: the deno host cannot watch workers here: it has no way to learn that a thread ended (EOPNOTSUPP)");
  });

  it("says EPERM, naming --allow-read, when it may not read the core", async () => {
    const out = await runFixture([]);
    expect(out.error).toBe("EPERM");
    expect(out.message).toContain("--allow-read");
  }, 20_000);
});
