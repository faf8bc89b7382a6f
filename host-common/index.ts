/** The API shared by every host (API.md). */
export { Bus, Peer, HANDLE_INVALID, HANDLE_FLAG_MANAGED, HANDLE_FLAG_REMOTE, DEFAULT_LIMITS,
  DEFAULT_MAX_MEMORY_BYTES, MAX_MEMORY_BYTES, installPlatform } from "./bus.js";
export type { Limits, BusOptions, ConnectOptions, SendOptions, SendResult, ResetOptions, PeerStats, BusHandle,
  PeerRef, Platform, BusStats } from "./bus.js";
export { Message } from "./message.js";
export type { MessageType } from "./message.js";
export { Bus1Error } from "./errors.js";
export type { ErrorCode } from "./errors.js";
