/**
 * Every payload of the wire contract (docs/protocol.md, docs/support.md), as
 * TypeScript types, in one module. Field names are the wire's own (snake_case):
 * objects are handed to the app exactly as the server sent them, so the types
 * here and the server's models (bridge/wire/*.py, api/schemas.py) read the same.
 */

// --- shared --------------------------------------------------------------------

/** RFC 3339 UTC with milliseconds, e.g. `2026-11-27T08:41:20.123Z`. */
export type Timestamp = string;

export interface ErrorInfo {
  code: string;
  message: string;
}

// --- messaging: up (client publishes) --------------------------------------------

export type MessageKind = "text" | "image" | "audio" | "file";

/** `conv/{conv_id}/msg/{user_id}`, and the body of the HTTP send. */
export interface SendMessage {
  client_msg_id: string;
  kind: MessageKind;
  text?: string;
  media_id?: string;
  reply_to?: string;
}

/** `conv/{conv_id}/read/{user_id}`: everything up to `seq` is read. */
export interface ReadUp {
  seq: number;
}

/** `conv/{conv_id}/typing/{user_id}` (QoS 0). */
export interface TypingUp {
  typing: boolean;
}

// --- messaging: down ---------------------------------------------------------------

export interface MediaInfo {
  media_id: string;
  mime: string;
  size: number;
  /** A path under the API (`/v1/media/{id}`), fetched with the bearer token. */
  url: string;
  name: string;
  width?: number | null;
  height?: number | null;
  duration_ms?: number | null;
}

/** `user/{uid}/conv/{conv_id}/msg`: a committed message. */
export interface StoredMessage {
  id: string;
  conv_id: string;
  seq: number;
  sender_id: string;
  kind: MessageKind;
  text: string | null;
  media: MediaInfo | null;
  reply_to: string | null;
  client_msg_id: string;
  created_at: Timestamp;
}

export type AckStatus = "stored" | "duplicate" | "rejected";
export type RejectionCode =
  | "not_member"
  | "unknown_conversation"
  | "invalid_payload"
  | "too_large"
  | "unknown_media"
  | "rate_limited";

/** `user/{uid}/ack`: exactly one per MQTT send (sent to every device of the sender). */
export interface Ack {
  client_msg_id: string | null;
  conv_id: string;
  status: AckStatus;
  id?: string | null;
  seq?: number | null;
  error?: ErrorInfo | null;
}

/** `user/{uid}/conv/{conv_id}/read` (the conversation comes from the topic). */
export interface ReadEvent {
  user_id: string;
  seq: number;
}

/** `user/{uid}/conv/{conv_id}/typing`. */
export interface TypingEvent {
  user_id: string;
  typing: boolean;
}

// --- presence ----------------------------------------------------------------------

/** `presence/{user_id}/{device_id}`, retained; also the Last Will. */
export interface PresenceUp {
  online: boolean;
}

/** `user/{uid}/presence`: a conversation peer came online or went offline. */
export interface PresenceEvent {
  user_id: string;
  online: boolean;
  /** When the user went offline; null while online. */
  last_seen: Timestamp | null;
}

// --- calls -------------------------------------------------------------------------

export type CallMedia = "audio" | "video";
export type CallEventName =
  | "ringing"
  | "incoming"
  | "accepted"
  | "declined"
  | "cancelled"
  | "ended"
  | "missed"
  | "busy"
  | "error"
  | "recording";
export type RecordingStatus =
  "requested" | "starting" | "active" | "ending" | "complete" | "failed";

export interface InviteUp {
  to: string;
  media: CallMedia;
}
export interface AcceptUp {
  device_id: string;
}
export interface RecordUp {
  recording: boolean;
}
/** decline and hangup carry nothing: the topic says who and what. */
export type EmptyUp = Record<string, never>;

export interface LiveKitJoin {
  url: string;
  room: string;
  token: string;
}

/** `user/{uid}/call`. In an `error` event `from`, `to` and `media` may be null. */
export interface CallEvent {
  event: CallEventName;
  call_id: string;
  from: string | null;
  to: string | null;
  media: CallMedia | null;
  livekit?: LiveKitJoin | null;
  device_id?: string | null;
  /** Why it ended or was refused (`hangup`, `no_answer`, `glare`, `already_in_call`, ...). */
  reason?: string | null;
  recording?: { status: RecordingStatus } | null;
}

export interface LiveCall {
  call_id: string;
  from: string;
  to: string;
  media: CallMedia;
  status: "ringing" | "active";
  device_id: string | null;
  livekit: LiveKitJoin;
}

/** `user/{uid}/call/current`, retained: the user's live calls (at most one). */
export interface CallState {
  calls: LiveCall[];
}

// --- support -----------------------------------------------------------------------

export type Priority = "urgent" | "high" | "normal" | "low";
export type TicketStatus = "queued" | "assigned" | "closed";
export type OperatorStatus = "online" | "away" | "offline";
export type SupportEventName = "queued" | "assigned" | "transferred" | "closed" | "error";
export type SupportReason =
  | "new"
  | "agent_offline"
  | "agent_signed_off"
  | "no_first_response"
  | "transferred"
  | "taken"
  | "routed"
  | "closed_by_user"
  | "closed_by_agent";
export type DeskEventName = "assigned" | "unassigned" | "closed" | "escalated" | "updated";

export interface Person {
  id: string;
  name: string;
}

/** `user/{uid}/support`, to the ticket's user. */
export interface SupportEvent {
  event: SupportEventName;
  ticket_id: string;
  conv_id: string;
  position?: number | null;
  agent?: Person | null;
  /** Grows with every change of the ticket's state (not with position updates). */
  version: number;
  reason?: SupportReason | null;
  estimated_wait_seconds?: number | null;
  priority?: Priority | null;
}

export interface TicketView {
  ticket_id: string;
  conv_id: string;
  user: Person;
  subject: string;
  priority: Priority;
  /** The priority the queue orders by: raised one level per aging step. */
  effective_priority: Priority;
  status: TicketStatus;
  version: number;
  agent: Person | null;
  position: number | null;
  created_at: Timestamp;
  queued_at: Timestamp | null;
  assigned_at: Timestamp | null;
  first_response_at: Timestamp | null;
  sla_deadline: Timestamp | null;
  closed_at: Timestamp | null;
  closed_by: "user" | "agent" | null;
  escalations: number;
  rating: number | null;
  unread_count?: number | null;
  /** Only in `GET /v1/support/tickets/{id}` for operators. */
  events?: unknown[];
}

/** `user/{operator_id}/support/desk`: an operator's own chats. */
export interface DeskEvent {
  event: DeskEventName;
  ticket: TicketView;
  reason?: SupportReason | null;
}

/** Retained on `ops/queue` (operators): every waiting ticket in queue order. */
export interface QueueSnapshot {
  tickets: TicketView[];
  updated_at: Timestamp;
}

export interface OperatorView {
  id: string;
  name: string;
  status: OperatorStatus;
  connected: boolean;
  /** Whether the router may give this operator a ticket right now. */
  available: boolean;
  open_chats: number;
  capacity: number;
  supervisor: boolean;
  last_assigned_at: Timestamp | null;
}

export interface WaitStats {
  waiting_now: number;
  longest_wait_seconds: number | null;
  assigned_last_hour: number;
  median_wait_seconds: number | null;
  p90_wait_seconds: number | null;
  median_first_response_seconds: number | null;
  closed_last_hour: number;
  average_rating: number | null;
}

/** Retained on `ops/floor` (supervisors): operators, load and waits. */
export interface FloorSnapshot {
  operators: OperatorView[];
  stats: WaitStats;
  updated_at: Timestamp;
}

export interface CannedReply {
  id: string;
  title: string;
  text: string;
  shared: boolean;
}

// --- HTTP answers ------------------------------------------------------------------

export type Platform = "ios" | "android" | "web";

export interface Session {
  user_id: string;
  access_token: string;
}

export interface MqttCredentials {
  ws_url: string;
  tcp_host: string;
  tcp_port: number;
  username: string;
  password: string;
  client_id: string;
}

/** `POST /v1/devices`: one device's MQTT identity (what `ChatClient` connects with). */
export interface Device {
  device_id: string;
  mqtt: MqttCredentials;
}

export interface Conversation {
  conv_id: string;
  kind: string;
  member_ids: string[];
  title: string | null;
  created_at: Timestamp;
}

export interface ConversationSummary {
  conv_id: string;
  kind: string;
  member_ids: string[];
  title: string | null;
  last_message: StoredMessage | null;
  unread_count: number;
  last_seq: number;
  read_seq: number;
}

export interface SyncConversation {
  conv_id: string;
  kind: string;
  member_ids: string[];
  title: string | null;
  last_seq: number;
  read_seq: number;
  messages: StoredMessage[];
  has_more: boolean;
}

export interface UploadedMedia extends MediaInfo {
  kind: MessageKind;
}

export interface CallRecord {
  call_id: string;
  direction: "outgoing" | "incoming";
  peer_id: string;
  conv_id: string;
  media: CallMedia;
  status: string;
  end_reason: string | null;
  started_at: Timestamp;
  answered_at: Timestamp | null;
  ended_at: Timestamp | null;
  duration_s: number | null;
  seen: boolean;
  recording: { status: string; location: string | null } | null;
}

export interface CallList {
  calls: CallRecord[];
  missed_unseen: number;
}

export interface OpenedTicket {
  ticket_id: string;
  conv_id: string;
  status: TicketStatus;
  position: number | null;
}

export interface SupportOverview {
  operators: OperatorView[];
  queue: TicketView[];
  stats: WaitStats;
}
