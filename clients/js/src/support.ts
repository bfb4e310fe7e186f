/**
 * The support `version` rule (docs/support.md): every ticket event carries the
 * ticket's `version`, which grows with each change of its state (not with
 * position updates). Two router instances may publish close together, so
 * events can arrive out of order; a client drops an event whose `version` is
 * lower than one it has already seen for that ticket. Equal versions pass:
 * position updates share the version of the state they belong to.
 *
 * An event identical to the last one passed for the ticket is dropped too: two
 * instances may announce the same state, and showing it twice helps nobody.
 */

const TICKETS_KEPT = 10_000;

interface Seen {
  version: number;
  fingerprint: string | undefined;
}

export class SupportVersions {
  private readonly seen = new Map<string, Seen>();

  /**
   * Record an event of the ticket; false when it is stale (an older version)
   * or, given a `fingerprint` (e.g. the payload text), a repeat of the last one.
   */
  accept(ticketId: string, version: number, fingerprint?: string): boolean {
    const known = this.seen.get(ticketId);
    if (known !== undefined) {
      if (version < known.version) return false;
      if (fingerprint !== undefined && fingerprint === known.fingerprint) return false;
    }
    // Re-inserted so the map's order is "least recently changed first" for trimming.
    this.seen.delete(ticketId);
    this.seen.set(ticketId, { version, fingerprint });
    if (this.seen.size > TICKETS_KEPT) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return true;
  }

  /** The highest version seen for the ticket (undefined: none). */
  get(ticketId: string): number | undefined {
    return this.seen.get(ticketId)?.version;
  }
}
