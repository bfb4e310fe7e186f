/**
 * The JavaScript client of the chat backend, for the app (React Native / Expo)
 * and the operators' dashboard (browser):
 *
 *   const http = new ChatHttp("https://chat.example.com");
 *   const me = await http.login("alice", "s3cret-pass");
 *   const device = await http.createDevice("ios");
 *   const client = new ChatClient({ device, userId: me.user_id, http });
 *   client.on("message", (m) => show(m));
 *   await client.connect();
 *   const ack = await client.sendText(convId, "hello");
 *
 * `ChatHttp` is the HTTP API; `ChatClient` is one device's MQTT connection with
 * the outbox, de-duplication, gap filling, catch-up and presence done for you.
 */

export { ChatClient } from "./client.js";
export type {
  ChatClientEvents,
  ChatClientOptions,
  ReadReceipt,
  SendOptions,
  TypingIndicator,
} from "./client.js";
export { ChatHttp } from "./http.js";
export type {
  ChatHttpOptions,
  FetchFn,
  HistoryWindow,
  HttpSendResult,
  ReactNativeFile,
  TicketScope,
  UploadSource,
} from "./http.js";
export {
  ApiError,
  NotAuthorizedError,
  NotConnectedError,
  OutboxClosedError,
  PublishRefusedError,
  TimeoutError,
} from "./errors.js";
export { TypedEmitter } from "./emitter.js";
export type { Listener } from "./emitter.js";
export { newId, isValidId } from "./ids.js";
export { Outbox, encodeSend } from "./outbox.js";
export type { OutboxOptions, PendingSend, PublishFn } from "./outbox.js";
export { SeqTracker } from "./sequence.js";
export { SupportVersions } from "./support.js";
export * as topics from "./topics.js";
export type * from "./wire.js";
