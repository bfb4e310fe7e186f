/**
 * A small typed event emitter. Not Node's `events` module: the library runs in
 * browsers and React Native too, and a typed map lets `on("message", m => ...)`
 * know that `m` is a `StoredMessage`.
 */

import { TimeoutError } from "./errors.js";

export type Listener<T> = (value: T) => void;

export class TypedEmitter<Events extends object> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Calls `listener` for every `name` event; returns a function that removes it. */
  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(name, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(name, listener);
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    this.listeners.get(name)?.delete(listener as Listener<never>);
  }

  /** Calls `listener` for the next `name` event only. */
  once<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(name, (value) => {
      off();
      listener(value);
    });
    return off;
  }

  /**
   * The next `name` event matching `predicate`, or a rejection after
   * `timeoutMs` (no timeout when 0). Register before causing the event: events
   * are not buffered.
   */
  waitFor<K extends keyof Events>(
    name: K,
    predicate: (value: Events[K]) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<Events[K]> {
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const off = this.on(name, (value) => {
        if (!predicate(value)) return;
        off();
        if (timer !== undefined) clearTimeout(timer);
        resolve(value);
      });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          off();
          reject(new TimeoutError(`no matching "${String(name)}" event within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  listenerCount<K extends keyof Events>(name: K): number {
    return this.listeners.get(name)?.size ?? 0;
  }

  /**
   * Deliver `value` to every listener of `name`. A listener that throws must
   * not keep the others (or the client's own bookkeeping) from running: its
   * error goes to `onListenerError`.
   */
  protected emit<K extends keyof Events>(name: K, value: Events[K]): void {
    const set = this.listeners.get(name);
    if (set === undefined || set.size === 0) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(value);
      } catch (error) {
        this.onListenerError(error, String(name));
      }
    }
  }

  protected onListenerError(error: unknown, name: string): void {
    console.error(`listener of "${name}" threw`, error);
  }
}
