/**
 * Which `seq` of each conversation this client has already seen (the same
 * logic as the Python client's chatclient/sequence.py).
 *
 * Per conversation a `floor` (every seq up to it is seen, or was deliberately
 * skipped by `seed`) and the set of seen seqs above it. A plain "highest seq
 * seen" is not enough: with several persistence instances, seq 8 may be
 * *delivered* before seq 7 although it was committed after it, and 7 must still
 * count as new. The set only holds seqs above a hole; holes are filled from
 * history, so it stays tiny, and it is capped anyway.
 */

const MAX_ABOVE = 10_000;

interface ConvSeq {
  floor: number;
  above: Set<number>;
  // A conversation first met through a live message with seq s: what lies below
  // s is unknown, not seen, so seqs up to `softLimit` (s - 1) count as seen only
  // once they arrive (kept in `below`): seq 1 may arrive just after seq 2.
  softLimit: number;
  below: Set<number>;
}

function compact(state: ConvSeq): void {
  while (state.above.has(state.floor + 1)) {
    state.floor += 1;
    state.above.delete(state.floor);
  }
  if (state.above.size > MAX_ABOVE) {
    // Give up on the oldest holes rather than grow forever.
    state.floor = Math.min(...state.above);
    state.above.delete(state.floor);
    compact(state);
  }
}

export class SeqTracker {
  private readonly convs = new Map<string, ConvSeq>();

  seen(convId: string, seq: number): boolean {
    const state = this.convs.get(convId);
    if (state === undefined) return false;
    if (seq <= state.softLimit) return state.below.has(seq);
    if (seq <= state.floor) return true;
    return state.above.has(seq);
  }

  /**
   * Mark `seq` seen. The first seq of an unknown conversation is its baseline:
   * the client does not know that conversation's history, and fetching all of
   * it on the first live message would be a surprise (`seed` sets one instead).
   */
  add(convId: string, seq: number): void {
    const state = this.convs.get(convId);
    if (state === undefined) {
      this.convs.set(convId, {
        floor: seq,
        above: new Set(),
        softLimit: seq - 1,
        below: new Set(),
      });
      return;
    }
    if (seq > state.floor) {
      state.above.add(seq);
      compact(state);
    } else if (seq <= state.softLimit && state.below.size < MAX_ABOVE) {
      state.below.add(seq);
    }
  }

  /** Treat every seq up to `seq` as seen (after loading history, say). */
  seed(convId: string, seq: number): void {
    let state = this.convs.get(convId);
    if (state === undefined) {
      state = { floor: seq, above: new Set(), softLimit: 0, below: new Set() };
      this.convs.set(convId, state);
    }
    state.floor = seq;
    state.softLimit = 0;
    state.below.clear();
    state.above = new Set([...state.above].filter((s) => s > seq));
    compact(state);
  }

  /** The highest seq with nothing missing at or below it (undefined: unknown). */
  floor(convId: string): number | undefined {
    return this.convs.get(convId)?.floor;
  }

  /** The highest seq seen (undefined: unknown). */
  last(convId: string): number | undefined {
    const state = this.convs.get(convId);
    if (state === undefined) return undefined;
    return Math.max(state.floor, ...state.above);
  }

  /** {conv_id: floor}: what to tell the server we have (sync's `known`). */
  floors(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [convId, state] of this.convs) out[convId] = state.floor;
    return out;
  }
}
