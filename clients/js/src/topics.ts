/**
 * Every topic string the client uses is built or parsed here, and nowhere else
 * (the same rule as the server's bridge/topics.py, whose layout this mirrors).
 *
 * Up-topics end with the publishing user's id: the broker only lets a user
 * publish where that last level is its own id.
 */

export type ConvUpKind = "msg" | "read" | "typing";
export type CallAction = "invite" | "accept" | "decline" | "hangup" | "record";

// --- up-topics (the client publishes) ------------------------------------------------

export function convUp(convId: string, kind: ConvUpKind, userId: string): string {
  return `conv/${convId}/${kind}/${userId}`;
}

export function callUp(callId: string, action: CallAction, userId: string): string {
  return `call/${callId}/${action}/${userId}`;
}

/** Retained `{"online"}`; the Last Will uses the same topic. */
export function presence(userId: string, deviceId: string): string {
  return `presence/${userId}/${deviceId}`;
}

// --- down-topics (the client subscribes to user/{own id}/#) ---------------------------

export function userRoot(userId: string): string {
  return `user/${userId}/#`;
}

export function userConv(userId: string, convId: string, kind: ConvUpKind): string {
  return `user/${userId}/conv/${convId}/${kind}`;
}

export function userAck(userId: string): string {
  return `user/${userId}/ack`;
}

export function userCall(userId: string): string {
  return `user/${userId}/call`;
}

/** Retained: the user's live calls. */
export function userCallState(userId: string): string {
  return `user/${userId}/call/current`;
}

export function userPresence(userId: string): string {
  return `user/${userId}/presence`;
}

export function userSupport(userId: string): string {
  return `user/${userId}/support`;
}

export function userSupportDesk(operatorId: string): string {
  return `user/${operatorId}/support/desk`;
}

// --- operators (retained snapshots; the broker lets only operators/supervisors read) ---

export function opsQueue(): string {
  return "ops/queue";
}

export function opsFloor(): string {
  return "ops/floor";
}

// --- parsing what arrives -------------------------------------------------------------

/** What a topic under `user/{uid}/` (or an ops snapshot) is about. */
export type DownTopic =
  | { kind: "conv"; convId: string; what: ConvUpKind }
  | { kind: "ack" }
  | { kind: "call" }
  | { kind: "callState" }
  | { kind: "presence" }
  | { kind: "support" }
  | { kind: "desk" }
  | { kind: "queue" }
  | { kind: "floor" }
  | { kind: "other" };

const CONV_KINDS: readonly string[] = ["msg", "read", "typing"];

/**
 * Classify an inbound topic for user `userId`. Each candidate is rebuilt with
 * the builders above and compared, so no layout is spelled out twice.
 */
export function parseDown(userId: string, topic: string): DownTopic {
  switch (topic) {
    case userAck(userId):
      return { kind: "ack" };
    case userCall(userId):
      return { kind: "call" };
    case userCallState(userId):
      return { kind: "callState" };
    case userPresence(userId):
      return { kind: "presence" };
    case userSupport(userId):
      return { kind: "support" };
    case userSupportDesk(userId):
      return { kind: "desk" };
    case opsQueue():
      return { kind: "queue" };
    case opsFloor():
      return { kind: "floor" };
  }
  const parts = topic.split("/");
  if (parts.length === 5) {
    const convId = parts[3] ?? "";
    const what = parts[4] ?? "";
    if (CONV_KINDS.includes(what) && topic === userConv(userId, convId, what as ConvUpKind)) {
      return { kind: "conv", convId, what: what as ConvUpKind };
    }
  }
  return { kind: "other" };
}
