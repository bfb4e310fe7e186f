/**
 * The errors the library throws, one class per thing a caller may branch on.
 * `name` is set on each so they stay recognizable after crossing realms
 * (e.g. a dashboard's worker), where `instanceof` does not hold.
 */

/** An HTTP error answer. `code` is the contract's error code (e.g. `not_member`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`${status} ${code}: ${message}`);
    this.name = "ApiError";
  }
}

/** Something did not happen within its time limit. */
export class TimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TimeoutError";
  }
}

/** An MQTT operation needs a connection and there is none right now. */
export class NotConnectedError extends Error {
  constructor(message = "not connected") {
    super(message);
    this.name = "NotConnectedError";
  }
}

/** The broker refused a subscription or the connection itself (ACL, credentials). */
export class NotAuthorizedError extends Error {
  constructor(
    message: string,
    readonly reasonCode?: number,
  ) {
    super(message);
    this.name = "NotAuthorizedError";
  }
}

/** The broker refused a publish (MQTT 5 PUBACK reason code, e.g. 0x87 not authorized). */
export class PublishRefusedError extends Error {
  constructor(
    message: string,
    readonly reasonCode?: number,
  ) {
    super(message);
    this.name = "PublishRefusedError";
  }
}

/** The client was closed before the send was acked. */
export class OutboxClosedError extends Error {
  constructor(message = "outbox closed") {
    super(message);
    this.name = "OutboxClosedError";
  }
}
