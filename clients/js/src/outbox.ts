/**
 * The sender's outbox: every send is kept until its ack arrives (the same
 * rules as the Python client's chatclient/outbox.py).
 *
 * Why it exists:
 * - An MQTT send is only done when the persistence service acks it on
 *   `user/{uid}/ack`. A connection lost in between loses nothing: after a
 *   reconnect `resendAll()` publishes the unacked sends again with the *same*
 *   `client_msg_id`, and the server answers `duplicate` for any it had stored.
 * - A send whose ack does not come (lost on the way, e.g. while a restarted
 *   broker had no subscriber for it yet) is published again by `resendOverdue`
 *   (5 s by default), with the same `client_msg_id`.
 * - `seq` follows the order in which the server commits sends. Several
 *   persistence instances share the load, so two sends on the wire together may
 *   be committed in either order. At most `maxInFlight` (default 1) unacked sends
 *   per conversation on the wire make `seq` follow the order of `send()` calls;
 *   other conversations are independent.
 *
 * Pure logic: publishing goes through a callback, so it is testable without a
 * broker. Sends are keyed by (conv_id, client_msg_id) because the server
 * de-duplicates per conversation.
 */

import { OutboxClosedError, PublishRefusedError } from "./errors.js";
import type { Ack, SendMessage } from "./wire.js";

/**
 * Publish one send. Throws (synchronously) when it cannot even be handed to
 * the connection (not connected): the send stays in flight for `resendAll`.
 * The promise settles on the broker's PUBACK; a `PublishRefusedError` means the
 * broker refused it and no ack will ever come.
 */
export type PublishFn = (convId: string, payload: string) => Promise<void>;

export interface PendingSend {
  readonly convId: string;
  readonly clientMsgId: string;
  /** Serialized once, so a re-send is byte for byte the original. */
  readonly payload: string;
  readonly promise: Promise<Ack>;
  publishCount: number;
  /** The last publish attempt threw (not connected): nothing reached the wire. */
  publishFailed: boolean;
  /** `now()` of the last publish attempt, in ms. */
  publishedAt: number;
  resolve(ack: Ack): void;
  reject(error: Error): void;
}

export interface OutboxOptions {
  maxInFlight?: number;
  /** The clock, in ms (tests pass their own). */
  now?: () => number;
  /** Told about a publish attempt that threw, for logging. */
  onPublishError?: (send: PendingSend, error: unknown) => void;
}

/** The smallest payload: `null`/`undefined` fields are left out (the server is strict). */
export function encodeSend(body: SendMessage): string {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (value !== undefined && value !== null) out[key] = value;
  }
  return JSON.stringify(out);
}

export class Outbox {
  readonly maxInFlight: number;
  private readonly now: () => number;
  private readonly onPublishError: ((send: PendingSend, error: unknown) => void) | undefined;
  private readonly byKey = new Map<string, PendingSend>();
  // Insertion order of these maps keeps re-sends in first-send order.
  private readonly flying = new Map<string, PendingSend[]>();
  private readonly queued = new Map<string, PendingSend[]>();
  private isClosed = false;

  constructor(
    private readonly publish: PublishFn,
    options: OutboxOptions = {},
  ) {
    this.maxInFlight = options.maxInFlight ?? 1;
    if (this.maxInFlight < 1) throw new RangeError("maxInFlight must be at least 1");
    this.now = options.now ?? (() => Date.now());
    this.onPublishError = options.onPublishError;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Unacked sends, on the wire or waiting. */
  get size(): number {
    return this.byKey.size;
  }

  /** Sends published and not yet acked (of one conversation, or all). */
  inFlight(convId?: string): PendingSend[] {
    if (convId !== undefined) return [...(this.flying.get(convId) ?? [])];
    return [...this.flying.values()].flat();
  }

  /** Sends held back by the in-flight limit, in send order. */
  waiting(convId?: string): PendingSend[] {
    if (convId !== undefined) return [...(this.queued.get(convId) ?? [])];
    return [...this.queued.values()].flat();
  }

  /**
   * Queue a send; the promise resolves to its `Ack` (a `rejected` ack is a
   * result, not an error). A send whose (conv_id, client_msg_id) is still
   * pending is not queued twice: its existing promise is returned.
   */
  send(convId: string, body: SendMessage): Promise<Ack> {
    if (this.isClosed) return Promise.reject(new OutboxClosedError("outbox is closed"));
    const key = keyOf(convId, body.client_msg_id);
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing.promise;
    let resolve!: (ack: Ack) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<Ack>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A caller that never awaits must not get an "unhandled rejection" (which
    // ends a Node process) when the client closes; callers that await still see it.
    promise.catch(() => undefined);
    const pending: PendingSend = {
      convId,
      clientMsgId: body.client_msg_id,
      payload: encodeSend(body),
      promise,
      publishCount: 0,
      publishFailed: false,
      publishedAt: 0,
      resolve,
      reject,
    };
    this.byKey.set(key, pending);
    listOf(this.queued, convId).push(pending);
    this.pump(convId);
    return promise;
  }

  /**
   * Settle the send this ack is for; false for an ack that is not ours. Unknown
   * acks are normal: acks go to every device of the sender, a late second ack
   * follows a re-send, and an unparsable payload is acked with a null id.
   */
  onAck(ack: Ack): boolean {
    if (ack.client_msg_id === null) return false;
    const key = keyOf(ack.conv_id, ack.client_msg_id);
    const pending = this.byKey.get(key);
    if (pending === undefined || pending.publishCount === 0) return false;
    this.byKey.delete(key);
    removeFrom(this.flying, ack.conv_id, pending);
    pending.resolve(ack);
    this.pump(ack.conv_id);
    return true;
  }

  /**
   * Publish every in-flight send again (after a reconnect); returns how many.
   * Waiting sends go out as their turn comes. `onlyFailed` limits it to sends
   * whose publish threw (queued while not connected), so nothing goes out twice.
   */
  resendAll(options: { onlyFailed?: boolean } = {}): number {
    let count = 0;
    for (const pending of this.inFlight()) {
      if (options.onlyFailed && !pending.publishFailed) continue;
      this.publishOne(pending);
      count += 1;
    }
    return count;
  }

  /** Publish again every in-flight send not acked `olderThanMs` after its last publish. */
  resendOverdue(olderThanMs: number, now: number = this.now()): number {
    const overdue = this.inFlight().filter((p) => now - p.publishedAt >= olderThanMs);
    for (const pending of overdue) this.publishOne(pending);
    return overdue.length;
  }

  /** Fail every unsettled send with `OutboxClosedError` (nothing will ack them now). */
  close(reason = "outbox closed"): void {
    this.isClosed = true;
    for (const pending of this.byKey.values()) pending.reject(new OutboxClosedError(reason));
    this.byKey.clear();
    this.flying.clear();
    this.queued.clear();
  }

  // --- internals ---------------------------------------------------------------------

  /** Move waiting sends of one conversation onto the wire while slots are free. */
  private pump(convId: string): void {
    const queue = this.queued.get(convId);
    if (queue === undefined) return;
    const flying = listOf(this.flying, convId);
    while (queue.length > 0 && flying.length < this.maxInFlight) {
      const pending = queue.shift()!;
      flying.push(pending);
      this.publishOne(pending);
    }
    if (queue.length === 0) this.queued.delete(convId);
    if (flying.length === 0) this.flying.delete(convId);
  }

  private publishOne(pending: PendingSend): void {
    pending.publishCount += 1;
    pending.publishedAt = this.now();
    let puback: Promise<void>;
    try {
      puback = this.publish(pending.convId, pending.payload);
    } catch (error) {
      // Not connected or similar: it stays in flight and `resendAll` retries.
      pending.publishFailed = true;
      this.onPublishError?.(pending, error);
      return;
    }
    pending.publishFailed = false;
    puback.then(
      () => undefined,
      (error: unknown) => this.onPubackError(pending, error),
    );
  }

  private onPubackError(pending: PendingSend, error: unknown): void {
    // A lost connection is not final: the ack (or a re-send) settles it.
    if (!(error instanceof PublishRefusedError)) return;
    // The broker refused the publish itself (ACL): no ack will ever come.
    const key = keyOf(pending.convId, pending.clientMsgId);
    if (this.byKey.get(key) !== pending) return;
    this.byKey.delete(key);
    removeFrom(this.flying, pending.convId, pending);
    pending.reject(error);
    this.pump(pending.convId);
  }
}

function keyOf(convId: string, clientMsgId: string): string {
  // Ids never contain a space (the contract's id pattern), so this is unambiguous.
  return `${convId} ${clientMsgId}`;
}

function listOf(map: Map<string, PendingSend[]>, convId: string): PendingSend[] {
  let list = map.get(convId);
  if (list === undefined) {
    list = [];
    map.set(convId, list);
  }
  return list;
}

function removeFrom(map: Map<string, PendingSend[]>, convId: string, pending: PendingSend): void {
  const list = map.get(convId);
  if (list === undefined) return;
  const index = list.indexOf(pending);
  if (index >= 0) list.splice(index, 1);
  if (list.length === 0) map.delete(convId);
}
