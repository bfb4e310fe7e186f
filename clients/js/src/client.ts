/**
 * `ChatClient`: one device's MQTT connection (over WebSocket), with the
 * contract's client duties done on the caller's behalf, as the Python client
 * (chatclient/client.py) does them:
 *
 * - a persistent session (clean start off, MQTT 5 session expiry), so the
 *   broker queues for the device while it is briefly offline;
 * - presence: retained `{"online": true}` on connect and after every
 *   reconnect, a Last Will `{"online": false}` for a lost connection, and an
 *   explicit offline publish on `close()` (a graceful DISCONNECT discards the Will);
 * - the outbox (outbox.ts): sends are kept until acked, re-sent with the same
 *   `client_msg_id` after a reconnect and after an ack timeout, one in flight
 *   per conversation so `seq` follows the send order;
 * - per-conversation de-duplication by `seq` and gap filling from history
 *   (delivery.ts), so `message` events carry each message once and in order;
 * - after a reconnect, a catch-up over HTTP (`/v1/sync`) for anything missed;
 * - late `ringing`/`incoming`/`accepted` events of a call already over here are
 *   dropped (calls.ts), support events older than the ticket's known `version`
 *   are dropped (support.ts).
 */

import mqtt from "mqtt";
import type { IClientOptions, IClientPublishOptions, MqttClient } from "mqtt";

import { EndedCalls } from "./calls.js";
import { Delivery } from "./delivery.js";
import { TypedEmitter } from "./emitter.js";
import { ApiError, NotAuthorizedError, NotConnectedError, PublishRefusedError } from "./errors.js";
import type { ChatHttp } from "./http.js";
import { newId } from "./ids.js";
import { Outbox } from "./outbox.js";
import { SupportVersions } from "./support.js";
import * as topics from "./topics.js";
import { sleep, withContext, withTimeout } from "./util.js";
import type {
  Ack,
  CallEvent,
  CallMedia,
  CallState,
  DeskEvent,
  Device,
  FloorSnapshot,
  MessageKind,
  PresenceEvent,
  QueueSnapshot,
  ReadEvent,
  SendMessage,
  StoredMessage,
  SupportEvent,
  TypingEvent,
} from "./wire.js";

const SESSION_EXPIRY_SECONDS = 7 * 24 * 3600; // as the Python client
const ONLINE = JSON.stringify({ online: true });
const OFFLINE = JSON.stringify({ online: false });
// Catch-up after a reconnect: thousands of devices come back at once after a
// broker restart, and a busy server answers 503; each asks again later, with
// jittered doubling waits (as the Python client).
const CATCH_UP_ATTEMPTS = 6;
const CATCH_UP_FIRST_RETRY_MS = 1000;

/** A read receipt: `user_id` has read `conv_id` up to `seq`. */
export interface ReadReceipt extends ReadEvent {
  conv_id: string;
}

/** Someone (never this user) is typing in `conv_id`, or stopped. */
export interface TypingIndicator extends TypingEvent {
  conv_id: string;
}

/** Every event a `ChatClient` emits, by name. */
export interface ChatClientEvents {
  /** A stored message (live, from a gap fetch, or from a catch-up), once, in order. */
  message: StoredMessage;
  read: ReadReceipt;
  typing: TypingIndicator;
  /** Every ack on the user's ack topic, including those for the user's other devices. */
  ack: Ack;
  /** A call event (late live events of calls that ended here are dropped). */
  call: CallEvent;
  /** The user's live calls (retained: also on every connect). */
  callState: CallState;
  /** A conversation peer came online or went offline. */
  presence: PresenceEvent;
  /** A support ticket of this user changed (stale versions are dropped). */
  support: SupportEvent;
  /** Operators: one of their own chats changed. */
  desk: DeskEvent;
  /** Operators (`operatorViews.queue`): the waiting tickets, in queue order. */
  queue: QueueSnapshot;
  /** Supervisors (`operatorViews.floor`): operators, load and waits. */
  floor: FloorSnapshot;
  /** Anything on the user's topics this library does not model. */
  other: { topic: string; payload: unknown };
  /** The connection is up (`reconnect`: not the first time). */
  connected: { reconnect: boolean; sessionPresent: boolean };
  /** The connection went down; it comes back on its own unless `closed`. */
  disconnected: { closed: boolean };
  /** A reconnect is fully handled: presence re-announced, unacked sends re-sent, catch-up done. */
  recovered: { resent: number; caughtUp: number };
  /** Something went wrong in the background (unreadable payload, failed catch-up, refused connect). */
  error: Error;
}

export interface ChatClientOptions {
  /** The device, as `ChatHttp.createDevice()` returned it. */
  device: Device;
  /** The user the device belongs to. */
  userId: string;
  /** Needed for gap filling and catch-up (the HTTP history and sync endpoints). */
  http?: ChatHttp;
  /** Operators: also subscribe to the retained `ops/queue`; supervisors: `ops/floor`. */
  operatorViews?: { queue?: boolean; floor?: boolean };
  /** A send with no ack this long is published again (default 5000 ms). */
  ackTimeoutMs?: number;
  /** Unacked sends on the wire per conversation (default 1: keeps `seq` in send order). */
  maxInFlight?: number;
  /** Wait between reconnect attempts (default 1000 ms). */
  reconnectPeriodMs?: number;
  /** Another broker URL than the device's `ws_url` (e.g. behind a proxy). */
  wsUrl?: string;
  /** Passed to `mqtt.connect` last (an escape hatch: anything set here wins). */
  mqttOptions?: Partial<IClientOptions>;
}

export interface SendOptions {
  clientMsgId?: string;
  replyTo?: string;
}

export class ChatClient extends TypedEmitter<ChatClientEvents> {
  readonly userId: string;
  readonly deviceId: string;
  readonly device: Device;
  readonly http: ChatHttp | undefined;
  private readonly options: ChatClientOptions;
  private readonly ackTimeoutMs: number;
  private outbox: Outbox;
  private readonly delivery: Delivery;
  private readonly supportVersions = new SupportVersions();
  private readonly deskVersions = new SupportVersions();
  private readonly snapshotTimes = new Map<string, string>();
  private readonly endedCalls = new EndedCalls();
  private client: MqttClient | undefined;
  private ready = false; // the first connect's setup is done
  private connacks = 0; // CONNACKs of the current connection object
  private ackTimer: ReturnType<typeof setInterval> | undefined;
  private recoveryChain: Promise<unknown> = Promise.resolve();
  private readonly decoder = typeof TextDecoder === "undefined" ? undefined : new TextDecoder();

  constructor(options: ChatClientOptions) {
    super();
    this.options = options;
    this.device = options.device;
    this.userId = options.userId;
    this.deviceId = options.device.device_id;
    this.http = options.http;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 5_000;
    this.outbox = this.newOutbox();
    this.delivery = new Delivery(
      options.http,
      (message) => this.emit("message", message),
      (error) => this.emit("error", error),
    );
  }

  // --- lifecycle ----------------------------------------------------------------------

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Unacked sends (on the wire, or waiting for their turn). */
  get pendingSends(): number {
    return this.outbox.size;
  }

  /**
   * Connect, subscribe to `user/{own id}/#` (and the ops views asked for),
   * announce presence. Throws `NotAuthorizedError` when the broker refuses the
   * credentials or a subscription. May be called again after `close()`: the
   * persistent session delivers what the broker queued meanwhile.
   */
  async connect(timeoutMs = 10_000): Promise<void> {
    if (this.client !== undefined) throw new Error("already connected");
    if (this.outbox.closed) this.outbox = this.newOutbox();
    const creds = this.device.mqtt;
    const url = this.options.wsUrl ?? creds.ws_url;
    const clientOptions: IClientOptions = {
      protocolVersion: 5,
      clientId: creds.client_id,
      username: creds.username,
      password: creds.password,
      clean: false,
      properties: { sessionExpiryInterval: SESSION_EXPIRY_SECONDS },
      will: {
        topic: topics.presence(this.userId, this.deviceId),
        payload: OFFLINE,
        qos: 1,
        retain: true,
      },
      reconnectPeriod: this.options.reconnectPeriodMs ?? 1_000,
      connectTimeout: timeoutMs,
      keepalive: 30,
      // Typing queued while offline is stale by the time the connection is back.
      queueQoSZero: false,
      ...this.options.mqttOptions,
    };
    const client = mqtt.connect(url, clientOptions);
    this.client = client;
    this.ready = false;
    this.connacks = 0;
    client.on("message", (topic, payload) => this.route(topic, payload));
    client.on("connect", (connack) => {
      this.connacks += 1;
      this.onConnect(client, connack.sessionPresent ?? false);
    });
    client.on("close", () => {
      if (this.client === client && this.ready) this.emit("disconnected", { closed: false });
    });
    client.on("error", (error) => this.onMqttError(client, error));
    let sessionPresent = false;
    try {
      sessionPresent = await withTimeout(
        firstConnect(client),
        timeoutMs,
        "no CONNACK from the broker",
      );
      await withTimeout(this.subscribeAll(client), timeoutMs, "no SUBACK from the broker");
      await withTimeout(
        this.publishOn(client, topics.presence(this.userId, this.deviceId), ONLINE, {
          qos: 1,
          retain: true,
        }),
        timeoutMs,
        "presence not acknowledged",
      );
    } catch (error) {
      this.client = undefined;
      client.end(true);
      throw error;
    }
    this.ready = true;
    this.ackTimer = setInterval(() => this.resendOverdue(), Math.min(1_000, this.ackTimeoutMs));
    // Sends queued before connecting (their publish threw) go out now.
    this.outbox.resendAll({ onlyFailed: true });
    this.emit("connected", { reconnect: false, sessionPresent });
    if (this.connacks > 1) {
      // The connection dropped and came back during the setup above: its
      // recovery was skipped then, so run it now.
      this.scheduleRecovery(client);
    }
  }

  /** Go offline gracefully: presence offline, DISCONNECT, fail unacked sends. */
  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (this.ackTimer !== undefined) clearInterval(this.ackTimer);
    this.ackTimer = undefined;
    if (client === undefined) return;
    const wasReady = this.ready;
    this.ready = false;
    if (client.connected) {
      try {
        const presence = topics.presence(this.userId, this.deviceId);
        await withTimeout(
          this.publishOn(client, presence, OFFLINE, { qos: 1, retain: true }),
          2_000,
          "offline presence not acknowledged",
        );
      } catch {
        // The Will is gone with a graceful DISCONNECT; a missed offline is only cosmetic.
      }
    }
    await client.endAsync().catch(() => client.end(true));
    // Let messages that already arrived finish their way to the listeners.
    await this.delivery.settled();
    this.outbox.close("client closed before the ack arrived");
    if (wasReady) this.emit("disconnected", { closed: true });
  }

  /**
   * Simulate a network loss: close the socket without DISCONNECT. The broker
   * publishes the Last Will; the client reconnects on its own, then re-sends,
   * re-announces and catches up (`recovered` tells when).
   */
  dropConnection(): void {
    const client = this.requireClient();
    client.stream?.destroy();
  }

  // --- sending -------------------------------------------------------------------------

  /**
   * Queue a send through the outbox; resolves to its `Ack` (a `rejected` ack is a
   * result, not an error). Rejects with `OutboxClosedError` if the client closes
   * first, `PublishRefusedError` if the broker refuses the publish.
   */
  send(convId: string, body: SendMessage): Promise<Ack> {
    return this.outbox.send(convId, body);
  }

  sendText(convId: string, text: string, options: SendOptions = {}): Promise<Ack> {
    return this.send(convId, {
      client_msg_id: options.clientMsgId ?? newId(),
      kind: "text",
      text,
      ...(options.replyTo === undefined ? {} : { reply_to: options.replyTo }),
    });
  }

  /** Media uploaded first with `ChatHttp.upload`; `text` is an optional caption. */
  sendMedia(
    convId: string,
    kind: Exclude<MessageKind, "text">,
    mediaId: string,
    text?: string,
    options: SendOptions = {},
  ): Promise<Ack> {
    return this.send(convId, {
      client_msg_id: options.clientMsgId ?? newId(),
      kind,
      media_id: mediaId,
      ...(text === undefined ? {} : { text }),
      ...(options.replyTo === undefined ? {} : { reply_to: options.replyTo }),
    });
  }

  /**
   * Read receipt up to `seq` (QoS 1). While disconnected it waits in the MQTT
   * client's queue and goes out on reconnect (receipts never move backwards, so
   * a late one is harmless); resolves on the broker's PUBACK.
   */
  async markRead(convId: string, seq: number): Promise<void> {
    const client = this.requireClient();
    const topic = topics.convUp(convId, "read", this.userId);
    await this.publishOn(client, topic, JSON.stringify({ seq }), { qos: 1 });
  }

  /** Typing state (QoS 0: ephemeral). Needs a connection: a stale typing state is useless. */
  async setTyping(convId: string, typing: boolean): Promise<void> {
    const client = this.requireConnected();
    const topic = topics.convUp(convId, "typing", this.userId);
    await this.publishOn(client, topic, JSON.stringify({ typing }), { qos: 0 });
  }

  // --- calls ---------------------------------------------------------------------------

  /** Invite `to`; resolves to the call id. The outcome arrives as `call` events. */
  async startCall(
    to: string,
    media: CallMedia = "audio",
    callId: string = newId(),
  ): Promise<string> {
    await this.callAction(callId, "invite", { to, media });
    return callId;
  }

  /** Answer on this device. */
  acceptCall(callId: string): Promise<void> {
    return this.callAction(callId, "accept", { device_id: this.deviceId });
  }

  declineCall(callId: string): Promise<void> {
    return this.callAction(callId, "decline", {});
  }

  /** Cancel before an answer, end after one. */
  hangUp(callId: string): Promise<void> {
    return this.callAction(callId, "hangup", {});
  }

  /** Server-side recording of an answered call (when the server has it enabled). */
  startRecording(callId: string): Promise<void> {
    return this.callAction(callId, "record", { recording: true });
  }

  stopRecording(callId: string): Promise<void> {
    return this.callAction(callId, "record", { recording: false });
  }

  private async callAction(callId: string, action: topics.CallAction, body: object): Promise<void> {
    // Call actions are moments: one queued while offline could ring or end a call late.
    const client = this.requireConnected();
    const topic = topics.callUp(callId, action, this.userId);
    await this.publishOn(client, topic, JSON.stringify(body), { qos: 1 });
  }

  // --- what the client knows ----------------------------------------------------------

  /** The highest `seq` seen in `convId` (undefined: none yet). */
  lastSeq(convId: string): number | undefined {
    return this.delivery.lastSeq(convId);
  }

  /**
   * Treat every message of `convId` up to `seq` as seen (e.g. after loading
   * history for a screen): later ones are checked for gaps against it.
   */
  seed(convId: string, seq: number): void {
    this.delivery.seed(convId, seq);
  }

  /** The highest `version` seen for a support ticket (events below it are dropped). */
  ticketVersion(ticketId: string): number | undefined {
    return this.supportVersions.get(ticketId);
  }

  /** Note a ticket `version` learnt elsewhere (e.g. over HTTP): older events are then dropped. */
  noteTicketVersion(ticketId: string, version: number): void {
    this.supportVersions.accept(ticketId, version);
  }

  /**
   * Fetch what was missed over HTTP (`/v1/sync`) and emit it; resolves to how
   * many messages were emitted. Messages already seen are dropped; order is kept.
   */
  catchUp(): Promise<number> {
    return this.delivery.catchUp();
  }

  // --- internals: connection ------------------------------------------------------------

  private newOutbox(): Outbox {
    return new Outbox((convId, payload) => this.publishSend(convId, payload), {
      maxInFlight: this.options.maxInFlight ?? 1,
    });
  }

  private publishSend(convId: string, payload: string): Promise<void> {
    // Throwing here (not connected) keeps the send in the outbox for the re-send
    // on connect, rather than in the MQTT client's own offline queue.
    const client = this.requireConnected();
    return this.publishOn(client, topics.convUp(convId, "msg", this.userId), payload, { qos: 1 });
  }

  private async subscribeAll(client: MqttClient): Promise<void> {
    const wanted = [topics.userRoot(this.userId)];
    if (this.options.operatorViews?.queue) wanted.push(topics.opsQueue());
    if (this.options.operatorViews?.floor) wanted.push(topics.opsFloor());
    for (const topic of wanted) {
      try {
        await client.subscribeAsync(topic, { qos: 1 });
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        throw new NotAuthorizedError(
          `subscription to ${topic} refused: ${(error as Error).message}`,
          typeof code === "number" ? code : undefined,
        );
      }
    }
  }

  private onConnect(client: MqttClient, sessionPresent: boolean): void {
    if (this.client !== client || !this.ready) return; // the first connect is handled in connect()
    this.emit("connected", { reconnect: true, sessionPresent });
    this.scheduleRecovery(client);
  }

  /** One recovery at a time, in order: two quick reconnects each get theirs. */
  private scheduleRecovery(client: MqttClient): void {
    this.recoveryChain = this.recoveryChain
      .then(() => this.recover(client))
      .catch((error: unknown) =>
        this.emit("error", withContext(error, "recovery after reconnect failed")),
      );
  }

  /** After a reconnect: presence again, re-send what is unacked, catch up. */
  private async recover(client: MqttClient): Promise<void> {
    if (this.client !== client) return;
    // The Last Will said offline while we were gone: say online again.
    this.publishOn(client, topics.presence(this.userId, this.deviceId), ONLINE, {
      qos: 1,
      retain: true,
    }).catch(() => undefined);
    const resent = this.outbox.resendAll();
    let caughtUp = 0;
    if (this.http !== undefined) caughtUp = await this.catchUpRetrying(client);
    this.emit("recovered", { resent, caughtUp });
  }

  /** Catch up, asking again after a 5xx or a network failure; never after a
   * refusal (4xx), nor once this connection was replaced or closed. */
  private async catchUpRetrying(client: MqttClient): Promise<number> {
    let delay = CATCH_UP_FIRST_RETRY_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.catchUp();
      } catch (error) {
        const refused = error instanceof ApiError && error.status < 500;
        if (refused || attempt === CATCH_UP_ATTEMPTS || this.client !== client) {
          this.emit("error", withContext(error, "catch-up after reconnect failed"));
          return 0;
        }
      }
      await sleep(delay / 2 + (Math.random() * delay) / 2);
      delay *= 2;
    }
  }

  private onMqttError(client: MqttClient, error: Error): void {
    if (this.client !== client) return;
    // A refused CONNACK means the device was removed (or its password is
    // wrong): the MQTT client stops retrying; say why.
    this.emit("error", refusal(error) ?? error);
  }

  private resendOverdue(): void {
    if (this.connected) this.outbox.resendOverdue(this.ackTimeoutMs);
  }

  private publishOn(
    client: MqttClient,
    topic: string,
    payload: string,
    options: IClientPublishOptions,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      client.publish(topic, payload, options, (error) => {
        if (error === undefined || error === null) {
          resolve();
          return;
        }
        const code = (error as { code?: unknown }).code;
        if (typeof code === "number" && code >= 0x80) {
          reject(new PublishRefusedError(`publish to ${topic} refused: ${error.message}`, code));
        } else {
          reject(error);
        }
      });
    });
  }

  private requireClient(): MqttClient {
    if (this.client === undefined)
      throw new NotConnectedError("not connected: call connect() first");
    return this.client;
  }

  private requireConnected(): MqttClient {
    const client = this.requireClient();
    if (!client.connected) throw new NotConnectedError("connection lost; reconnecting");
    return client;
  }

  // --- internals: routing ---------------------------------------------------------------

  private route(topic: string, payload: Uint8Array): void {
    // An empty payload clears a retained message: nothing to tell.
    if (payload.length === 0) return;
    let body: unknown;
    try {
      body = JSON.parse(this.text(payload));
    } catch (error) {
      this.emit("error", withContext(error, `unreadable payload on ${topic}`));
      return;
    }
    if (typeof body !== "object" || body === null) {
      this.emit("error", new Error(`payload on ${topic} is not a JSON object`));
      return;
    }
    const down = topics.parseDown(this.userId, topic);
    switch (down.kind) {
      case "conv":
        if (down.what === "msg") {
          const message = body as StoredMessage;
          if (typeof message.seq !== "number" || typeof message.conv_id !== "string") {
            this.emit("error", new Error(`malformed message on ${topic}`));
            return;
          }
          this.delivery.live(message);
        } else if (down.what === "read") {
          this.emit("read", { conv_id: down.convId, ...(body as ReadEvent) });
        } else {
          this.emit("typing", { conv_id: down.convId, ...(body as TypingEvent) });
        }
        return;
      case "ack": {
        const ack = body as Ack;
        this.outbox.onAck(ack);
        this.emit("ack", ack);
        return;
      }
      case "call":
        if (this.endedCalls.accept(body as CallEvent)) this.emit("call", body as CallEvent);
        return;
      case "callState":
        this.emit("callState", body as CallState);
        return;
      case "presence":
        this.emit("presence", body as PresenceEvent);
        return;
      case "support": {
        const event = body as SupportEvent;
        // Two router instances may publish close together: an event below a
        // version already seen for the ticket is stale (docs/support.md).
        if (this.supportVersions.accept(event.ticket_id, event.version, JSON.stringify(event))) {
          this.emit("support", event);
        }
        return;
      }
      case "desk": {
        const event = body as DeskEvent;
        const ticket = event.ticket;
        if (this.deskVersions.accept(ticket.ticket_id, ticket.version, JSON.stringify(event))) {
          this.emit("desk", event);
        }
        return;
      }
      case "queue":
        if (this.freshSnapshot(topic, body as QueueSnapshot))
          this.emit("queue", body as QueueSnapshot);
        return;
      case "floor":
        if (this.freshSnapshot(topic, body as FloorSnapshot))
          this.emit("floor", body as FloorSnapshot);
        return;
      case "other":
        this.emit("other", { topic, payload: body });
        return;
    }
  }

  private text(payload: Uint8Array): string {
    if (this.decoder !== undefined) return this.decoder.decode(payload);
    // No TextDecoder (some React Native engines): the MQTT client hands over a Buffer.
    return payload.toString();
  }

  /** Retained snapshots may be re-published by two instances: never go back in time. */
  private freshSnapshot(topic: string, snapshot: { updated_at: string }): boolean {
    const previous = this.snapshotTimes.get(topic);
    // RFC 3339 UTC strings of one format compare correctly as strings.
    if (previous !== undefined && snapshot.updated_at < previous) return false;
    this.snapshotTimes.set(topic, snapshot.updated_at);
    return true;
  }

  protected override onListenerError(error: unknown, name: string): void {
    if (name === "error") {
      super.onListenerError(error, name);
      return;
    }
    this.emit("error", withContext(error, `a "${name}" listener threw`));
  }
}

// --- helpers ---------------------------------------------------------------------------

/**
 * Resolves on the client's first CONNACK (to whether the broker still had the
 * session); rejects when the broker refuses the connection.
 */
function firstConnect(client: MqttClient): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const onConnect = (connack: { sessionPresent?: boolean }): void => {
      client.off("error", onError);
      resolve(connack.sessionPresent ?? false);
    };
    const onError = (error: Error): void => {
      // Only a refusal is final; socket errors are retried by the MQTT client.
      const refused = refusal(error);
      if (refused === undefined) return;
      client.off("connect", onConnect);
      reject(refused);
    };
    client.once("connect", onConnect);
    client.on("error", onError);
  });
}

/**
 * A `NotAuthorizedError` for a refused CONNACK: MQTT 5 reason codes 0x86 (bad
 * user name or password) and 0x87 (not authorized), MQTT 3.1.1 return codes 4
 * and 5. Undefined for any other error.
 */
function refusal(error: Error): NotAuthorizedError | undefined {
  const code = (error as { code?: unknown }).code;
  if (code === 0x86 || code === 0x87 || code === 4 || code === 5) {
    return new NotAuthorizedError(`connection refused: ${error.message}`, code);
  }
  return undefined;
}
