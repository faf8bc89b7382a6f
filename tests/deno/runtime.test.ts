// The Deno host itself (run by vitest.deno.config.ts, in Deno): the suite
// really runs in Deno on host-deno, and a Deno program that uses the
// package needs no permission but --allow-read.
import { describe, expect, it } from "vitest";
import { Bus } from "bus1-wasm";
// internals: which platform is installed (not part of the API)
import { requirePlatform } from "../../dist/host-common/platform.js";

declare const Deno: {
  version: { deno: string };
  execPath(): string;
  Command: new (cmd: string, o: { args: string[]; cwd?: string; env?: Record<string, string>; stdout: "piped"; stderr: "piped" }) => {
    output(): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }>;
  };
};

const fixture = new URL("./fixtures/read-only.mjs", import.meta.url).pathname;

/** Runs the fixture in a new Deno process with `permissions`; its JSON line, or a failure that shows its stderr. */
async function runFixture(permissions: string[]): Promise<Record<string, unknown>> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, fixture],
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

  it("says EPERM, naming --allow-read, when it may not read the core", async () => {
    const out = await runFixture([]);
    expect(out.error).toBe("EPERM");
    expect(out.message).toContain("--allow-read");
  }, 20_000);
});
