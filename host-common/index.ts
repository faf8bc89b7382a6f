/** The API shared by every host (API.md). */
export { Bus } from "./bus.js";
export { Peer } from "./peer.js";
export { RemotePeer, RemoteMessage } from "./remote.js";
export type { Serving, ServeOptions } from "./serve.js";
export type { PeerApi, RemotePeerApi, Remote, MessageLike } from "./api.js";
export { installPlatform } from "./platform.js";
export type { Platform, Watcher } from "./platform.js";
export { HANDLE_INVALID, HANDLE_FLAG_MANAGED, HANDLE_FLAG_REMOTE, DEFAULT_LIMITS, DEFAULT_MAX_MEMORY_BYTES,
  MAX_MEMORY_BYTES } from "./types.js";
export type { Limits, BusOptions, ConnectOptions, SendOptions, SendResult, ResetOptions, PeerStats, BusHandle,
  PeerRef, BusStats, BusSnapshot, PeerSnapshot, PeerState, HandleSnapshot, NodeSnapshot, QueuedSnapshot, SeedSnapshot,
  UserSnapshot, TransactionSnapshot, Usage } from "./types.js";
export { Message } from "./message.js";
export type { MessageType } from "./message.js";
export { Bus1Error } from "./errors.js";
export type { ErrorCode } from "./errors.js";
