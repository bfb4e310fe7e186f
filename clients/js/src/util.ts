/** Small internal helpers (not exported from the package). */

import { TimeoutError } from "./errors.js";

/** `promise`, or a `TimeoutError` saying what did not happen after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(`${what} within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** An `Error` that says where `error` happened; keeps its `name` so callers can still branch on it. */
export function withContext(error: unknown, context: string): Error {
  if (error instanceof Error) {
    const wrapped = new Error(`${context}: ${error.message}`, { cause: error });
    wrapped.name = error.name;
    return wrapped;
  }
  return new Error(`${context}: ${String(error)}`);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
