/**
 * DOC: errno — the error codes of the ABI
 *
 * Every export returns 0 or a negative errno from this set; each code has one
 * meaning, listed in docs/ABI.md. The numbers are Linux's, so a reader who
 * knows the kernel version of bus1 recognises them.
 */

export const EPERM: i32 = 1;
export const ENXIO: i32 = 6;
export const EBADF: i32 = 9;
export const EAGAIN: i32 = 11;
export const ENOMEM: i32 = 12;
export const EBUSY: i32 = 16;
export const EINVAL: i32 = 22;
export const ERANGE: i32 = 34;
export const EREMOTE: i32 = 66;
export const ENOTUNIQ: i32 = 76;
export const EMSGSIZE: i32 = 90;
export const EOPNOTSUPP: i32 = 95;
export const ESHUTDOWN: i32 = 108;
export const EHOSTUNREACH: i32 = 113;
export const ESTALE: i32 = 116;
export const EDQUOT: i32 = 122;
