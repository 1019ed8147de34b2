/**
 * The UI's view of the kernel's state document, held by the shared state client
 * (`kernel/state/client.ts`): one client per subscribed subtree, registered with the connection
 * indicator while in use.
 */
import { useEffect, useState } from 'preact/hooks';
import { StateClient, type ConnectionStatus } from '../../../kernel/state/client.ts';
import { auth$ } from '../lib/api.ts';
import { createStore } from '../lib/store.ts';

export type { ConnectionStatus } from '../../../kernel/state/client.ts';
export type {
  Approval, ComponentState, FallbackRecord, InferenceTurn, KernelState, TaskState, TaskStep, ToolCall, TaskUsage,
} from '../../../kernel/state/index.ts';

/** What the connection indicator shows: the worst status of the clients in use and their resyncs so far. */
export interface Connection {
  status: ConnectionStatus;
  /** Resyncs of every client this page load opened (closed ones included). */
  resyncs: number;
  /** The highest `seq` applied by a client in use. */
  seq: number;
}

const RANK: Record<ConnectionStatus, number> = { live: 0, connecting: 1, resyncing: 2, offline: 3 };
const clients = new Set<StateClient<unknown>>();
/** Resyncs of clients already closed (a page left), so the count never goes down. */
let retiredResyncs = 0;

/** The aggregated connection of every client in use. */
export const connection$ = createStore<Connection>({ status: 'connecting', resyncs: 0, seq: 0 });

function refresh(): void {
  let status: ConnectionStatus = 'live';
  let resyncs = retiredResyncs;
  let seq = 0;
  for (const client of clients) {
    if (RANK[client.status] > RANK[status]) status = client.status;
    resyncs += client.resyncs;
    seq = Math.max(seq, client.seq);
  }
  if (clients.size === 0) status = 'connecting';
  const last = connection$.get();
  if (last.status !== status || last.resyncs !== resyncs || last.seq !== seq) connection$.set({ status, resyncs, seq });
}

/** A subscription's state as a component sees it. */
export interface DocumentView<T> {
  /** The subtree at the path; undefined before the first snapshot or when nothing is there. */
  state: T | undefined;
  /** True once the first snapshot arrived (so `state === undefined` then means "absent"). */
  loaded: boolean;
  status: ConnectionStatus;
}

/**
 * Subscribe to the state document at `path` (a JSON Pointer, RFC 6901; `''` for the whole
 * document) for as long as the component is mounted. The client reconnects and resyncs on its
 * own; a 401 from the kernel shows the login form.
 */
export function useDocument<T>(path: string): DocumentView<T> {
  const [view, setView] = useState<DocumentView<T>>({ state: undefined, loaded: false, status: 'connecting' });
  useEffect(() => {
    // Back off to at most 3 s: a person is watching, and the kernel is usually local.
    const client = new StateClient<T>({ url: window.location.origin, reconnect: { maxMs: 3000 }, ...(path ? { path } : {}) });
    clients.add(client as StateClient<unknown>);
    setView({ state: undefined, loaded: false, status: 'connecting' });
    const offChange = client.subscribe((state) => {
      setView({ state, loaded: true, status: client.status });
      refresh();
    });
    const offStatus = client.onStatus((status) => {
      setView((v) => ({ ...v, status }));
      refresh();
    });
    const offError = client.onError((error) => {
      if (error.status === 401) auth$.set('needed');
    });
    void client.start();
    refresh();
    return () => {
      offChange();
      offStatus();
      offError();
      retiredResyncs += client.resyncs;
      client.close();
      clients.delete(client as StateClient<unknown>);
      refresh();
    };
  }, [path]);
  return view;
}
