/**
 * Messages reach the app once each and, where it can be done, in `seq` order,
 * whatever their source: live over MQTT, a gap fill from history, or a
 * catch-up with `POST /v1/sync` (the same rules as the Python client).
 *
 * - A `seq` already seen is dropped (delivery is at least once).
 * - A live message past a hole (`seq > floor + 1`) first gets the missing ones
 *   from history, so the app never shows 5 before 3 and 4.
 * - Work runs one piece at a time: the stream of a conversation is never
 *   interleaved from two sources (a live message waits for a gap fill).
 */

import type { ChatHttp } from "./http.js";
import { SeqTracker } from "./sequence.js";
import { withContext } from "./util.js";
import type { StoredMessage } from "./wire.js";

const HISTORY_PAGE = 200; // the contract's maximum `limit`

export class Delivery {
  private readonly seqs = new SeqTracker();
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly http: ChatHttp | undefined,
    private readonly deliver: (message: StoredMessage) => void,
    private readonly report: (error: Error) => void,
  ) {}

  /** A message that arrived live: handled in turn. */
  live(message: StoredMessage): void {
    this.exclusive(() => this.accept(message)).catch((error: unknown) =>
      this.report(withContext(error, "message handling failed")),
    );
  }

  /** Resolves when what is being handled now is done. */
  settled(): Promise<void> {
    return this.chain.then(() => undefined);
  }

  lastSeq(convId: string): number | undefined {
    return this.seqs.last(convId);
  }

  seed(convId: string, seq: number): void {
    this.seqs.seed(convId, seq);
  }

  /** Fetch what was missed and deliver it; resolves to how many messages were delivered. */
  async catchUp(): Promise<number> {
    const http = this.requireHttp();
    const known = this.seqs.floors();
    const conversations = await http.sync(known);
    return this.exclusive(async () => {
      let delivered = 0;
      for (const conversation of conversations) {
        const convId = conversation.conv_id;
        for (const message of conversation.messages) delivered += await this.accept(message);
        if (conversation.has_more && convId in known) {
          // Only where we know our place: for a conversation new to this client
          // what sync sent is the starting window, and paging on could replay
          // its whole history.
          delivered += await this.pageForward(convId);
        }
        if (this.seqs.floor(convId) === undefined) {
          // New to this client and empty: a baseline, so its next live
          // message is not taken for a gap.
          this.seqs.seed(convId, conversation.last_seq);
        }
      }
      return delivered;
    });
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.chain.then(work);
    this.chain = result.catch(() => undefined);
    return result;
  }

  /** Deliver `message` unless already seen, after any missing messages before it. */
  private async accept(message: StoredMessage): Promise<number> {
    const { conv_id: convId, seq } = message;
    if (this.seqs.seen(convId, seq)) return 0;
    let delivered = 0;
    const floor = this.seqs.floor(convId);
    if (floor !== undefined && seq > floor + 1 && this.http !== undefined) {
      delivered += await this.fillGap(convId, floor, seq);
    }
    if (this.seqs.seen(convId, seq)) return delivered; // the gap fetch brought it already
    this.seqs.add(convId, seq);
    this.deliver(message);
    return delivered + 1;
  }

  /**
   * Deliver the unseen messages with `after < seq < before`, from history. A
   * failed fetch is reported, not thrown: the live message still goes out and
   * the holes stay open for a late delivery or the next catch-up.
   */
  private async fillGap(convId: string, after: number, before: number): Promise<number> {
    const http = this.requireHttp();
    let delivered = 0;
    let cursor = after;
    while (cursor < before - 1) {
      let page: StoredMessage[];
      try {
        page = await http.history(convId, {
          afterSeq: cursor,
          limit: Math.min(HISTORY_PAGE, before - 1 - cursor),
        });
      } catch (error) {
        this.report(withContext(error, `gap fill of ${convId} failed`));
        return delivered;
      }
      const lastOfPage = page[page.length - 1];
      if (lastOfPage === undefined || lastOfPage.seq <= cursor) return delivered;
      for (const message of page) {
        if (message.seq >= before) return delivered;
        if (!this.seqs.seen(convId, message.seq)) {
          this.seqs.add(convId, message.seq);
          this.deliver(message);
          delivered += 1;
        }
      }
      cursor = lastOfPage.seq;
    }
    return delivered;
  }

  /** Deliver everything after the highest seq seen, page by page (sync's `has_more`). */
  private async pageForward(convId: string): Promise<number> {
    const http = this.requireHttp();
    let delivered = 0;
    for (;;) {
      const cursor = this.seqs.last(convId) ?? 0;
      const page = await http.history(convId, { afterSeq: cursor, limit: HISTORY_PAGE });
      const lastOfPage = page[page.length - 1];
      if (lastOfPage === undefined || lastOfPage.seq <= cursor) return delivered;
      for (const message of page) delivered += await this.accept(message);
    }
  }

  private requireHttp(): ChatHttp {
    if (this.http === undefined) throw new Error("catching up needs a ChatHttp");
    return this.http;
  }
}
