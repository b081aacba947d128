// TypeScript declarations of /client.js, the odin-ws browser client (docs/browser.md).

/** A message as the server sends it (docs/protocol.md). */
export interface OdinMessage<T = unknown> {
  type: "message";
  channel: string;
  /** Unique and rising per channel within one sequence space (epoch). */
  seq: number;
  data: T;
  /** The channel's latest message, sent first when a subscription asked for one. */
  snapshot?: boolean;
  /** A slow consumer's newest pending message that replaced older ones. */
  conflated?: boolean;
}

/** Messages were missed: sent by the server, or `reason: "reconnected"` by the client. */
export interface OdinGap {
  type: "gap";
  channels: string[];
  reason: "overrun" | "dropped" | "skipped" | "reconnected" | string;
  count?: number;
}

/** An error frame from the server, e.g. `invalid_channel` for a bad pattern. */
export interface OdinError {
  type: "error";
  code: string;
  message: string;
  id?: number | string;
  channels?: string[];
}

export type OdinState = "connecting" | "open" | "reconnecting" | "closed";

/** How the client is connected: WebSocket, or the Server-Sent Events fallback. */
export type OdinTransport = "websocket" | "sse";

export interface OdinStateDetail {
  /** open: the welcome's session and server. */
  session?: string;
  server?: string;
  /** reconnecting: the close code and reason, and the delay before the next attempt. */
  code?: number;
  reason?: string;
  delay?: number;
  /** The transport of this state (an `open` on another transport is told too). */
  transport: OdinTransport;
}

export interface OdinWSOptions {
  /** Sent as `?token=`; a function is asked again on each connect and on `token_expiring`. */
  token?: string | (() => string | Promise<string>);
  /** Ask for each channel's latest message on subscribe (default for every subscription). */
  snapshot?: boolean;
  onState?: (state: OdinState, detail: OdinStateDetail) => void;
  onGap?: (gap: OdinGap) => void;
  onError?: (error: OdinError) => void;
  /** false: never fall back to Server-Sent Events (default true). */
  sse?: boolean;
  /** WebSocket attempts in a row that never opened before using SSE (default 2). */
  sseAfter?: number;
  /** The event stream's URL (default: /sse beside `url`, ws: -> http:, wss: -> https:). */
  sseUrl?: string;
  /** While on SSE, how often (ms) a WebSocket is tried again (default 30000). */
  wsRetryMs?: number;
}

export interface SubscribeOptions {
  snapshot?: boolean;
}

export interface OdinSubscription {
  readonly channels: string[];
  readonly active: boolean;
  unsubscribe(): void;
}

export class OdinWS {
  constructor(url: string, options?: OdinWSOptions);
  readonly url: string;
  readonly state: OdinState;
  readonly transport: OdinTransport;
  /** Opens the connection; the first subscribe does it too. */
  connect(): void;
  /** Patterns may use `*` (one token) and `>` (the rest, last token only). */
  subscribe<T = unknown>(
    channels: string | string[],
    handler: (message: OdinMessage<T>) => void,
    options?: SubscribeOptions,
  ): OdinSubscription;
  /** Closes for good; `connect()` opens again. */
  close(): void;
}

/** NATS-style matching of a pattern against a channel. */
export function channelMatches(pattern: string, channel: string): boolean;

/** The reconnect delay (ms) for a 0-based attempt: exponential with jitter. */
export function backoffDelay(attempt: number): number;

export default OdinWS;
