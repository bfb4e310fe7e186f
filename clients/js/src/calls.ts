/**
 * Which call events to pass on. With several call-signaling instances, two
 * events of one call can cross on the way, so a `ringing`, `incoming` or
 * `accepted` may arrive after the call already ended on this device; once a
 * call is over here, nothing may revive it (the Python client does the same).
 */

import type { CallEvent } from "./wire.js";

const CALL_OVER = new Set(["declined", "cancelled", "ended", "missed", "busy"]);
const CALL_LIVE = new Set(["ringing", "incoming", "accepted"]);
const ENDED_CALLS_KEPT = 1_000;

export class EndedCalls {
  // Insertion-ordered, trimmed from the oldest: a bounded memory of ended calls.
  private readonly ended = new Set<string>();

  /** Record the event; false when it is a late live event of a call that ended. */
  accept(event: CallEvent): boolean {
    if (CALL_LIVE.has(event.event) && this.ended.has(event.call_id)) return false;
    if (CALL_OVER.has(event.event) && !this.ended.has(event.call_id)) {
      this.ended.add(event.call_id);
      if (this.ended.size > ENDED_CALLS_KEPT) {
        const oldest = this.ended.values().next().value;
        if (oldest !== undefined) this.ended.delete(oldest);
      }
    }
    return true;
  }
}
