/** A minimal observable value and its Preact hook, for the app's few pieces of global state. */
import { useEffect, useState } from 'preact/hooks';

/** A value with change listeners. */
export interface Store<T> {
  get(): T;
  set(value: T): void;
  /** @returns unsubscribe */
  subscribe(listener: (value: T) => void): () => void;
}

/** A store holding `initial`. Listeners run synchronously on each `set` of a different value. */
export function createStore<T>(initial: T): Store<T> {
  let value = initial;
  const listeners = new Set<(value: T) => void>();
  return {
    get: () => value,
    set(next) {
      if (Object.is(next, value)) return;
      value = next;
      for (const listener of [...listeners]) listener(value);
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** The store's current value; the component re-renders when it changes. */
export function useStore<T>(store: Store<T>): T {
  const [value, setValue] = useState(store.get());
  useEffect(() => {
    setValue(store.get());
    return store.subscribe(setValue);
  }, [store]);
  return value;
}

/** `Date.now()`, refreshed every `everyMs` (for ages that tick). */
export function useNow(everyMs: number): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}
