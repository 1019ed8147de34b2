/**
 * The messages of the patch stream (`docs/stream.md`), shared by the server routes
 * (`kernel/server/routes/stream.ts`) and the client library (`client.ts`). Isomorphic, types only.
 *
 * Server → client, on the WebSocket `/api/stream` (one JSON text frame each) and SSE
 * `/api/events` (one `data:` line each, `id:` = `seq`):
 * - an envelope `{seq, ts, ops}` (whole document) or `{seq, prev, ts, ops}` (narrowed with `?path=`);
 * - `{type: "snapshot", seq, state}` (narrowed: `{type: "snapshot", seq, path, state}`);
 * - `{type: "shutdown", seq, reason}`, `{type: "error", error, message}`, `{type: "pong", seq}`.
 *
 * Client → server (WebSocket only): `{type: "ping"}` (answered `pong`) and `{type: "resync"}`
 * (answered with a snapshot). Anything else is answered with `{type: "error", error: "E_BAD_INPUT"}`.
 */
import type { Operation } from 'fast-json-patch';

/**
 * A batch of RFC 6902 operations on RFC 6901 pointers into the whole document, published at the
 * end of one event-loop tick. `seq` is contiguous over the whole stream (1, 2, 3, …); `ts` is ms
 * since the epoch when it was published.
 */
export interface EnvelopeMessage {
  seq: number;
  ts: number;
  ops: Operation[];
  type?: undefined;
  prev?: undefined;
}

/**
 * An envelope on a subscription narrowed to a subtree (`?path=/tasks/<id>`): its operations are
 * rebased so that `""` is the subtree's root, and envelopes that do not touch the subtree are
 * skipped. `prev` is the `seq` of the previous message this subscription delivered (envelope or
 * snapshot, or the `since` it resumed from): a client whose last applied `seq` is not `prev` has
 * missed something and must resync.
 */
export interface NarrowedEnvelopeMessage {
  seq: number;
  prev: number;
  ts: number;
  ops: Operation[];
  type?: undefined;
}

/**
 * The whole document (or the subtree at `path` on a narrowed subscription) as of `seq`. `state`
 * is absent when nothing is at `path`. Sent first when the client has no `since`, when `since`
 * left the retained log, after `{type: "resync"}`, and to a client cut off for lagging.
 */
export interface SnapshotMessage<T = unknown> {
  type: 'snapshot';
  seq: number;
  /** The document's lifetime (one kernel run); a client resumes with `?since=N&epoch=E` so a restarted kernel answers with a snapshot. */
  epoch?: string;
  path?: string;
  state?: T;
}

/** The kernel is stopping: `seq` is the last sequence number sent on this stream. Reconnect later. */
export interface ShutdownMessage {
  type: 'shutdown';
  seq: number;
  reason: string;
}

/** A client frame was refused (`E_BAD_INPUT`); the stream goes on. */
export interface ErrorMessage {
  type: 'error';
  error: string;
  message: string;
}

/** The answer to a client's `{type: "ping"}`: the last `seq` sent on this stream. */
export interface PongMessage {
  type: 'pong';
  seq: number;
}

/** Anything the server sends on the stream. */
export type StreamMessage = EnvelopeMessage | NarrowedEnvelopeMessage | SnapshotMessage | ShutdownMessage | ErrorMessage | PongMessage;

/** What a client may send on the WebSocket. */
export type ClientFrame = { type: 'ping' } | { type: 'resync' };
