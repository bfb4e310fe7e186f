/**
 * The HTTP side of the contract (`/v1`): accounts, devices, conversations,
 * history, sync, the HTTP send, media, calls history, presence, and live
 * support (docs/support.md).
 *
 * Only the global `fetch` is used (browsers, React Native and Node 20 all have
 * it). Every 4xx/5xx becomes an `ApiError` carrying the contract's error code,
 * so callers branch on codes, not on status numbers.
 */

import { ApiError, TimeoutError } from "./errors.js";
import type {
  CallList,
  CannedReply,
  Conversation,
  ConversationSummary,
  Device,
  OpenedTicket,
  OperatorStatus,
  OperatorView,
  Platform,
  PresenceEvent,
  Priority,
  SendMessage,
  Session,
  StoredMessage,
  SupportOverview,
  SyncConversation,
  TicketView,
  UploadedMedia,
} from "./wire.js";
import { encodeSend } from "./outbox.js";

export type FetchFn = typeof fetch;

export interface ChatHttpOptions {
  /** A bearer token to use from the start (e.g. one kept from an earlier login). */
  token?: string;
  /** Per-request time limit in ms (default 15 s). */
  timeoutMs?: number;
  /** Another `fetch` (default: the global one). */
  fetch?: FetchFn;
}

export interface HistoryWindow {
  afterSeq?: number;
  beforeSeq?: number;
  /** Default 50, at most 200. */
  limit?: number;
}

/**
 * What to upload: a `Blob`/`File` (browsers), raw bytes, or, in React Native,
 * a `{uri, name, type}` file reference, which its `FormData` understands.
 */
export type UploadSource = Blob | ArrayBuffer | Uint8Array | ReactNativeFile;

export interface ReactNativeFile {
  uri: string;
  name: string;
  type: string;
}

export interface HttpSendResult {
  /** 201: stored now; 200: a duplicate, `message` is the original. */
  status: number;
  duplicate: boolean;
  message: StoredMessage;
}

export type TicketScope = "mine" | "queue" | "all";

export class ChatHttp {
  readonly baseUrl: string;
  token: string | undefined;
  userId: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetchFn: FetchFn;

  constructor(baseUrl: string, options: ChatHttpOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    // Bound to globalThis: some browsers refuse a `fetch` called as a method of another object.
    this.fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** Send this bearer token from now on. */
  useToken(token: string): void {
    this.token = token;
  }

  /** Headers that authorize a request (e.g. for an `<Image source={{uri, headers}}>`). */
  authHeaders(): Record<string, string> {
    return this.token === undefined ? {} : { Authorization: `Bearer ${this.token}` };
  }

  /** The absolute URL of an API path such as a media `url`. */
  url(path: string): string {
    return /^[a-z]+:\/\//i.test(path) ? path : `${this.baseUrl}${path}`;
  }

  // --- accounts and devices ---------------------------------------------------------

  async register(username: string, password: string, displayName: string): Promise<Session> {
    const body = { username, password, display_name: displayName };
    return this.session(await this.json<Session>("POST", "/v1/auth/register", body));
  }

  async login(username: string, password: string): Promise<Session> {
    return this.session(await this.json<Session>("POST", "/v1/auth/login", { username, password }));
  }

  /** A new device with its own MQTT credentials (what `ChatClient` connects with). */
  createDevice(platform: Platform = "web", pushToken?: string): Promise<Device> {
    // Optional fields are left out rather than sent as null: the server is strict.
    const body: Record<string, unknown> = { platform };
    if (pushToken !== undefined) body.push_token = pushToken;
    return this.json<Device>("POST", "/v1/devices", body);
  }

  /** Removes the device: its MQTT credentials stop working at once. */
  async deleteDevice(deviceId: string): Promise<void> {
    await this.request("DELETE", `/v1/devices/${enc(deviceId)}`);
  }

  /** An Expo push token (`ExponentPushToken[...]`), or null to stop pushes to the device. */
  setPushToken(
    deviceId: string,
    pushToken: string | null,
  ): Promise<{ device_id: string; push_token: string | null }> {
    return this.json("PUT", `/v1/devices/${enc(deviceId)}/push-token`, { push_token: pushToken });
  }

  // --- conversations and messages ---------------------------------------------------

  /** 201 for a new conversation; an existing direct pair answers 200 with itself. */
  createConversation(memberIds: string[], title?: string): Promise<Conversation> {
    const body: Record<string, unknown> = { member_ids: memberIds };
    if (title !== undefined) body.title = title;
    return this.json<Conversation>("POST", "/v1/conversations", body);
  }

  /** Most recently active first. */
  async listConversations(): Promise<ConversationSummary[]> {
    const answer = await this.json<{ conversations: ConversationSummary[] }>(
      "GET",
      "/v1/conversations",
    );
    return answer.conversations;
  }

  /** Messages in ascending `seq`; without a window, the newest `limit` ones. */
  async history(convId: string, window: HistoryWindow = {}): Promise<StoredMessage[]> {
    const query = params({
      after_seq: window.afterSeq,
      before_seq: window.beforeSeq,
      limit: window.limit,
    });
    const answer = await this.json<{ messages: StoredMessage[] }>(
      "GET",
      `/v1/conversations/${enc(convId)}/messages${query}`,
    );
    return answer.messages;
  }

  /** The HTTP send: delivered over MQTT like any other. A rejection throws `ApiError`. */
  async send(convId: string, body: SendMessage): Promise<HttpSendResult> {
    const response = await this.request(
      "POST",
      `/v1/conversations/${enc(convId)}/messages`,
      encodeSend(body),
    );
    const message = (await response.json()) as StoredMessage;
    return { status: response.status, duplicate: response.status === 200, message };
  }

  /**
   * Everything newer than `known` ({conv_id: last seq the client has}; an
   * unlisted conversation counts as 0), up to `limit` messages per conversation.
   */
  async sync(known: Record<string, number>, limit = 200): Promise<SyncConversation[]> {
    const answer = await this.json<{ conversations: SyncConversation[] }>("POST", "/v1/sync", {
      known,
      limit,
    });
    return answer.conversations;
  }

  mute(convId: string, muted = true): Promise<{ conv_id: string; muted: boolean }> {
    return this.json("PUT", `/v1/conversations/${enc(convId)}/mute`, { muted });
  }

  // --- presence and calls -----------------------------------------------------------

  /** Yourself or a conversation peer (anyone else is 404). */
  presence(userId: string): Promise<PresenceEvent> {
    return this.json<PresenceEvent>("GET", `/v1/users/${enc(userId)}/presence`);
  }

  /** Newest first; `before` is a call id, for the next page. */
  calls(options: { limit?: number; before?: string } = {}): Promise<CallList> {
    return this.json<CallList>("GET", `/v1/calls${params(options)}`);
  }

  /** Mark missed calls seen (these, or all); returns the missed calls left unseen. */
  async markCallsSeen(callIds?: string[]): Promise<number> {
    const body = callIds === undefined ? {} : { call_ids: callIds };
    const answer = await this.json<{ missed_unseen: number }>("POST", "/v1/calls/seen", body);
    return answer.missed_unseen;
  }

  // --- media ------------------------------------------------------------------------

  /** Upload a file (multipart field `file`); `mime` is decided by the server from the content. */
  upload(
    file: UploadSource,
    filename = "file",
    contentType = "application/octet-stream",
  ): Promise<UploadedMedia> {
    const form = new FormData();
    if (isReactNativeFile(file)) {
      // React Native's FormData takes a file reference; the DOM typings do not know it.
      form.append("file", file as unknown as Blob, file.name);
    } else if (file instanceof Blob) {
      form.append("file", file, filename);
    } else {
      const bytes = file instanceof Uint8Array ? file : new Uint8Array(file);
      form.append(
        "file",
        new Blob([bytes as Uint8Array<ArrayBuffer>], { type: contentType }),
        filename,
      );
    }
    return this.json<UploadedMedia>("POST", "/v1/media", form);
  }

  /** The bytes of a media `url` (a path under the API), fetched with the bearer token. */
  async download(urlPath: string): Promise<ArrayBuffer> {
    const response = await this.request("GET", urlPath);
    return response.arrayBuffer();
  }

  // --- support: users ----------------------------------------------------------------

  /** Open a ticket; its conversation is where the chat with the operator happens. */
  openTicket(subject: string, priority: Priority = "normal", text?: string): Promise<OpenedTicket> {
    const body: Record<string, unknown> = { subject, priority };
    if (text !== undefined) body.text = text;
    return this.json<OpenedTicket>("POST", "/v1/support/tickets", body);
  }

  /** Users: their own tickets. Operators: `mine`, `queue` or (supervisors) `all`. */
  async listTickets(scope?: TicketScope): Promise<TicketView[]> {
    const answer = await this.json<{ tickets: TicketView[] }>(
      "GET",
      `/v1/support/tickets${params({ scope })}`,
    );
    return answer.tickets;
  }

  getTicket(ticketId: string): Promise<TicketView> {
    return this.json<TicketView>("GET", `/v1/support/tickets/${enc(ticketId)}`);
  }

  closeTicket(ticketId: string): Promise<TicketView> {
    return this.json<TicketView>("POST", `/v1/support/tickets/${enc(ticketId)}/close`);
  }

  /** Once, after the ticket is closed; `score` 1-5. */
  rateTicket(ticketId: string, score: number, comment?: string): Promise<TicketView> {
    const body: Record<string, unknown> = { score };
    if (comment !== undefined) body.comment = comment;
    return this.json<TicketView>("POST", `/v1/support/tickets/${enc(ticketId)}/rating`, body);
  }

  // --- support: operators ------------------------------------------------------------

  /** Take a waiting ticket by hand (409 `not_queued`, `at_capacity`). */
  takeTicket(ticketId: string): Promise<TicketView> {
    return this.json<TicketView>("POST", `/v1/support/tickets/${enc(ticketId)}/take`);
  }

  /** To another operator, or back to the queue with `null`. */
  transferTicket(ticketId: string, operatorId: string | null): Promise<TicketView> {
    return this.json<TicketView>("POST", `/v1/support/tickets/${enc(ticketId)}/transfer`, {
      operator_id: operatorId,
    });
  }

  myOperator(): Promise<OperatorView> {
    return this.json<OperatorView>("GET", "/v1/support/operators/me");
  }

  setOperatorStatus(status: OperatorStatus): Promise<OperatorView> {
    return this.json<OperatorView>("PUT", "/v1/support/operators/me/status", { status });
  }

  cannedReplies(): Promise<CannedReply[]> {
    return this.json<{ replies: CannedReply[] }>("GET", "/v1/support/canned-replies").then(
      (answer) => answer.replies,
    );
  }

  /** `shared` (seen by every operator) is for supervisors. */
  createCannedReply(title: string, text: string, shared?: boolean): Promise<CannedReply> {
    const body: Record<string, unknown> = { title, text };
    if (shared !== undefined) body.shared = shared;
    return this.json<CannedReply>("POST", "/v1/support/canned-replies", body);
  }

  async deleteCannedReply(replyId: string): Promise<void> {
    await this.request("DELETE", `/v1/support/canned-replies/${enc(replyId)}`);
  }

  // --- support: supervisors ----------------------------------------------------------

  async listOperators(): Promise<OperatorView[]> {
    const answer = await this.json<{ operators: OperatorView[] }>("GET", "/v1/support/operators");
    return answer.operators;
  }

  createOperator(operator: {
    username: string;
    password: string;
    display_name: string;
    capacity?: number;
    supervisor?: boolean;
  }): Promise<OperatorView> {
    return this.json<OperatorView>("POST", "/v1/support/operators", stripUndefined(operator));
  }

  updateOperator(operatorId: string, changes: { capacity: number }): Promise<OperatorView> {
    return this.json<OperatorView>("PATCH", `/v1/support/operators/${enc(operatorId)}`, changes);
  }

  overview(): Promise<SupportOverview> {
    return this.json<SupportOverview>("GET", "/v1/support/overview");
  }

  // --- plumbing ---------------------------------------------------------------------

  private session(session: Session): Session {
    this.userId = session.user_id;
    this.useToken(session.access_token);
    return session;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.request(method, path, body);
    return (await response.json()) as T;
  }

  /** One request; `body` is sent as JSON unless it is already a string or a form. */
  async request(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json", ...this.authHeaders() };
    let payload: BodyInit | undefined;
    if (body instanceof FormData) {
      payload = body; // fetch sets the multipart boundary itself
    } else if (typeof body === "string") {
      payload = body;
      headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    // AbortController + setTimeout rather than AbortSignal.timeout: React Native lacks the latter.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    let response: Response;
    try {
      const init: RequestInit = { method, headers, signal: controller.signal };
      if (payload !== undefined) init.body = payload;
      response = await this.fetchFn(this.url(path), init);
    } catch (error) {
      if (controller.signal.aborted) {
        throw new TimeoutError(`${method} ${path}: no answer within ${this.timeoutMs} ms`);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
    if (response.status >= 400) throw await errorFrom(response);
    return response;
  }
}

/** Bodies that are not in the contract's shape (a proxy's 502, say) get the code `http_<status>`. */
async function errorFrom(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => "");
  try {
    const error = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    if (error && typeof error.code === "string") {
      return new ApiError(response.status, error.code, String(error.message ?? ""));
    }
  } catch {
    // not JSON: fall through
  }
  return new ApiError(response.status, `http_${response.status}`, text);
}

function enc(id: string): string {
  return encodeURIComponent(id);
}

function params(values: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined) search.set(name, String(value));
  }
  const text = search.toString();
  return text === "" ? "" : `?${text}`;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function isReactNativeFile(value: unknown): value is ReactNativeFile {
  return (
    typeof value === "object" &&
    value !== null &&
    !(value instanceof Blob) &&
    typeof (value as ReactNativeFile).uri === "string"
  );
}
