// What the demo's threads share: the node IDs of the story, message
// encoding, and one way to print a line that says which thread printed it.
import { writeSync } from "node:fs";
import { isMainThread, threadId } from "node:worker_threads";

// The app's nodes (caller-chosen IDs: bits 0 and 1 clear).
export const SERVICE_NODE = 4; // requests from plugins
export const LOG_NODE = 8; // log lines from plugins that were given it
export const CONFIG_NODE = 12; // handed out once, to show node-release

// Each plugin's nodes.
export const REPLY_NODE = 4; // replies and capabilities from the app
export const CONTROL_NODE = 8; // the demo's director says what to do next

// The director's node the plugins report to.
export const REPORT_NODE = 4;

// First payload byte of a message to the measuring worker (demo/sink.mjs).
export const DATA = 0, END = 1, PING = 2, QUIT = 3;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encode(body) {
  return encoder.encode(JSON.stringify(body));
}

// TextDecoder refuses views on shared memory: decode a copy of the slice.
export function decode(message) {
  return JSON.parse(decoder.decode(message.payload.slice()));
}

const thread = isMainThread ? "main" : `worker ${threadId}`;

// A worker's console.log goes through the main thread's event loop, which
// would print lines late and out of order while the main thread is busy.
// Every thread writes straight to stdout instead, in the order things happen.
export function say(who, text) {
  print(`${thread.padEnd(9)} ${who.padEnd(8)} ${text}`);
}

export function print(line) {
  const bytes = encoder.encode(`${line}\n`);
  for (let done = 0; done < bytes.length;) {
    try {
      done += writeSync(1, bytes, done);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
    }
  }
}

export function section(title) {
  print(`\n== ${title}`);
}
