/**
 * Bus1Error: every failure of the API, with an errno-style `code`.
 */

export type ErrorCode =
  | "EAGAIN" | "EBADF" | "EBUSY" | "EDQUOT" | "EHOSTUNREACH" | "EINVAL" | "EMSGSIZE" | "ENOMEM"
  | "ENOTUNIQ" | "ENXIO" | "EOPNOTSUPP" | "EPERM" | "ERANGE" | "EREMOTE" | "ESHUTDOWN" | "ESTALE";

/** errno numbers of the wasm ABI (Linux's), by code. */
export const ERRNO: Readonly<Record<ErrorCode, number>> = Object.freeze({
  EPERM: 1, ENXIO: 6, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EBUSY: 16, EINVAL: 22, ERANGE: 34,
  EREMOTE: 66, ENOTUNIQ: 76, EMSGSIZE: 90, EOPNOTSUPP: 95, ESHUTDOWN: 108, EHOSTUNREACH: 113,
  ESTALE: 116, EDQUOT: 122,
});

const CODES: Record<number, ErrorCode> = {};
for (const [code, n] of Object.entries(ERRNO)) CODES[n] = code as ErrorCode;

/** The code for an errno of the ABI, or undefined for a number the ABI does not have. */
export function codeOf(errno: number): ErrorCode | undefined {
  return CODES[errno];
}

/**
 * What each code means where `Bus1Error.of` names only the argument at fault.
 * EOPNOTSUPP is there what a send or a receive refuses: a value that cannot
 * go as an object. An operation that a host or a thread cannot do at all is
 * refused with its own words (`refused`).
 */
const MEANING: Record<ErrorCode, string> = {
  EAGAIN: "nothing to receive",
  EBADF: "the reference is closed",
  EBUSY: "the last reference of a live node's owner handle cannot be released",
  EDQUOT: "quota exceeded",
  EHOSTUNREACH: "the destination node is destroyed",
  EINVAL: "invalid argument",
  EMSGSIZE: "message too large",
  ENOMEM: "the bus is out of memory",
  ENOTUNIQ: "listed twice",
  ENXIO: "no such handle or slice",
  EOPNOTSUPP: "cannot be transferred as an object",
  EPERM: "not permitted",
  ERANGE: "out of range",
  EREMOTE: "not the owner of that node",
  ESHUTDOWN: "the peer is disconnected",
  ESTALE: "the node is already destroyed",
};

export class Bus1Error extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message?: string) {
    super(message ?? MEANING[code]);
    this.name = "Bus1Error";
    this.code = code;
  }

  /** "op: what: meaning" */
  static of(code: ErrorCode, op: string, what?: string): Bus1Error {
    return new Bus1Error(code, `${op}: ${what ? `${what}: ` : ""}${MEANING[code]} (${code})`);
  }
}

/** "op: why (code)": a refusal whose own words say what cannot be done, where the code's meaning would mislead. */
export function refused(code: ErrorCode, op: string, why: string): Bus1Error {
  return new Bus1Error(code, `${op}: ${why} (${code})`);
}
