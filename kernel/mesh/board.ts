/**
 * The dispatch board of one mesh target: a small `SharedArrayBuffer` that every thread calling
 * the target (the main thread and any caller worker) and every worker serving it read and write
 * with `Atomics`, so a caller picks a worker and admits a call without asking the main thread.
 *
 * Layout (Int32 words): a header, then {@link STRIDE} words per worker slot.
 *
 * | word            | meaning                                                                  |
 * |-----------------|--------------------------------------------------------------------------|
 * | `PRESSURE`      | 1 once a caller found no idle worker with a ready instance (grow signal) |
 * | `BOUND`         | the target's queue bound: calls queued or running, all workers together  |
 * | `HIGH`          | one past the highest slot ever opened (callers scan slots below it)      |
 * | `RETIRED`       | 1 once the target was replaced by a new version or removed (see below)   |
 * | slot `LOAD`     | calls queued or running on the slot's worker; −1 = no worker (empty, dead, retired) |
 * | slot `READY`    | fresh instances the worker holds ready (long-lived workers: 1 when idle) |
 * | slot `SERVED`   | calls served since the worker started (idle detection)                  |
 * | slot `WORKER`   | the id of the worker in the slot (a stale port is never used)           |
 * | slot `NATIVE`   | 1 while the worker is inside a SQLite call (see {@link Board.native})   |
 *
 * After the Int32 words, one Float64 per slot holds the deadline (ms since the epoch) of the call
 * the slot's worker is serving, 0 when idle: the main thread's watchdog stops a worker still
 * serving a call past its deadline when no caller is left to do it (its caller died first).
 * Aligned 8-byte stores and loads do not tear on the platforms Node supports.
 *
 * A caller increments a slot's load with compare-and-swap (never from −1), the serving worker
 * decrements it after its reply is posted, and the main thread takes a slot out of service by
 * swapping its load to −1: from 0 only when retiring an idle worker, unconditionally when a
 * worker died. The bound is checked against the sum of the loads read just before the claim,
 * so concurrent callers on different threads can exceed it by at most one call each.
 *
 * A hot reload gives the target a new board and marks the old one `RETIRED`. A caller checks
 * the mark before it claims and whenever it finds no worker: a retired board sends it back to
 * the main thread for the current one. Calls claimed on the old board before its slots were
 * retired (the same compare-and-swap on `LOAD`) are served by the old workers, which stop only
 * once their load is 0 — so a call is either admitted on the old version and finishes there,
 * or finds the board retired and goes to the new version; none is lost in between.
 */

/** Most workers one target can have. */
export const MAX_SLOTS = 64;
const PRESSURE = 0;
const BOUND = 1;
/** One past the highest slot ever opened: callers scan only that far. */
const HIGH = 2;
/** 1 once the board's target was replaced or removed: callers ask the main thread again. */
const RETIRED = 3;
const HEADER = 4;
const STRIDE = 5;
const LOAD = 0;
const READY = 1;
const SERVED = 2;
const WORKER = 3;
const NATIVE = 4;
/** Int32 words before the deadlines (a multiple of 2, so the Float64s are aligned). */
const WORDS = HEADER + MAX_SLOTS * STRIDE;

/** Outcome of {@link Board.claim}: a slot index, or why none was taken. */
export type Claim = { slot: number; pressured: boolean } | { busy: number } | { none: true };

/** A view of one target's board. Construct it over the same buffer on any thread. */
export class Board {
  readonly words: Int32Array;
  private readonly deadlines: Float64Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer, 0, WORDS);
    this.deadlines = new Float64Array(buffer, WORDS * 4, MAX_SLOTS);
  }

  /** A new board with every slot empty. @param bound the queue bound (calls) */
  static create(bound: number): Board {
    const board = new Board(new SharedArrayBuffer(WORDS * 4 + MAX_SLOTS * 8));
    board.words[BOUND] = bound;
    for (let s = 0; s < MAX_SLOTS; s++) board.words[HEADER + s * STRIDE + LOAD] = -1;
    return board;
  }

  private at(slot: number, field: number): number {
    return HEADER + slot * STRIDE + field;
  }

  get bound(): number {
    return Atomics.load(this.words, BOUND);
  }

  load(slot: number): number {
    return Atomics.load(this.words, this.at(slot, LOAD));
  }

  ready(slot: number): number {
    return Atomics.load(this.words, this.at(slot, READY));
  }

  served(slot: number): number {
    return Atomics.load(this.words, this.at(slot, SERVED));
  }

  worker(slot: number): number {
    return Atomics.load(this.words, this.at(slot, WORKER));
  }

  /** Calls queued or running on every live slot. */
  depth(): number {
    let total = 0;
    const high = Atomics.load(this.words, HIGH);
    for (let s = 0; s < high; s++) total += Math.max(0, this.load(s));
    return total;
  }

  /**
   * Admit one call and pick the slot to send it to: an idle worker holding a ready instance,
   * else an idle one, else the least loaded. `usable(slot, workerId)` says whether the caller
   * can reach that worker (it holds a port to it).
   * @returns the slot (its load already incremented; `pressured` when no idle worker had a ready
   *   instance), `{busy}` with the depth when the bound is reached, or `{none}` when no worker is live
   */
  claim(usable: (slot: number, workerId: number) => boolean): Claim {
    const high = Atomics.load(this.words, HIGH);
    for (let attempt = 0; attempt < 8; attempt++) {
      let depth = 0;
      let best = -1;
      let bestScore = Infinity;
      for (let s = 0; s < high; s++) {
        const load = this.load(s);
        if (load < 0) continue;
        depth += load;
        if (!usable(s, this.worker(s))) continue;
        const score = load === 0 ? (this.ready(s) > 0 ? 0 : 1) : 1 + load;
        if (score < bestScore) {
          best = s;
          bestScore = score;
        }
      }
      if (depth >= this.bound) return { busy: depth };
      if (best < 0) return { none: true };
      const load = this.load(best);
      if (load >= 0 && Atomics.compareExchange(this.words, this.at(best, LOAD), load, load + 1) === load) {
        return { slot: best, pressured: bestScore > 0 };
      }
    }
    return { none: true };
  }

  /**
   * Raise the grow signal. @returns true for the one caller that raised it (it tells the main
   * thread); false when it was already up
   */
  raisePressure(): boolean {
    return Atomics.compareExchange(this.words, PRESSURE, 0, 1) === 0;
  }

  /** Whether the target was replaced by a new version or removed (callers reconnect). */
  get retired(): boolean {
    return Atomics.load(this.words, RETIRED) === 1;
  }

  /** Main thread: the target was replaced or removed; set before its slots are retired. */
  markRetired(): void {
    Atomics.store(this.words, RETIRED, 1);
  }

  /** Lower the grow signal (main thread, after acting on it). */
  clearPressure(): void {
    Atomics.store(this.words, PRESSURE, 0);
  }

  /** Serving worker: one call answered (its reply is posted). */
  release(slot: number): void {
    Atomics.add(this.words, this.at(slot, SERVED), 1);
    const index = this.at(slot, LOAD);
    // Never below zero, never revive a slot the main thread took out of service.
    for (;;) {
      const load = Atomics.load(this.words, index);
      if (load <= 0 || Atomics.compareExchange(this.words, index, load, load - 1) === load) return;
    }
  }

  /** Serving worker: how many ready instances it holds. */
  setReady(slot: number, count: number): void {
    Atomics.store(this.words, this.at(slot, READY), count);
  }

  /** Deadline (ms since the epoch) of the call the slot's worker is serving; 0 when idle. */
  deadline(slot: number): number {
    return this.deadlines[slot]!;
  }

  /** Serving worker: the deadline of the call it starts (0 when it finished). */
  setDeadline(slot: number, deadline: number): void {
    this.deadlines[slot] = deadline;
  }

  /**
   * Whether the slot's worker is inside a SQLite call. better-sqlite3 aborts the whole process
   * when a statement fails (as an interrupted one does) while its thread is being terminated, so
   * the main thread terminates a worker only outside: the scope's guard ends every statement at
   * the call's deadline, before the mesh stops the worker.
   */
  native(slot: number): boolean {
    return Atomics.load(this.words, this.at(slot, NATIVE)) === 1;
  }

  /** Serving worker: entering (true) or leaving (false) a SQLite call. */
  setNative(slot: number, inside: boolean): void {
    Atomics.store(this.words, this.at(slot, NATIVE), inside ? 1 : 0);
  }

  /** Main thread: put a started worker in service in `slot`. */
  open(slot: number, workerId: number): void {
    this.deadlines[slot] = 0;
    Atomics.store(this.words, this.at(slot, NATIVE), 0);
    Atomics.store(this.words, this.at(slot, WORKER), workerId);
    Atomics.store(this.words, this.at(slot, SERVED), 0);
    Atomics.store(this.words, this.at(slot, LOAD), 0);
    if (Atomics.load(this.words, HIGH) <= slot) Atomics.store(this.words, HIGH, slot + 1);
  }

  /** Main thread: take an idle worker out of service. @returns false when a call claimed it meanwhile */
  retire(slot: number): boolean {
    return Atomics.compareExchange(this.words, this.at(slot, LOAD), 0, -1) === 0;
  }

  /**
   * Take a worker out of service whatever it holds: the main thread when it died or is stopped,
   * or a caller that stopped it at its deadline. Idempotent.
   * @returns how many calls it held (they are failed by the caller side)
   */
  close(slot: number): number {
    Atomics.store(this.words, this.at(slot, READY), 0);
    return Math.max(0, Atomics.exchange(this.words, this.at(slot, LOAD), -1));
  }

  /** Index of an empty slot, or −1 when all {@link MAX_SLOTS} are taken. */
  free(taken: ReadonlySet<number>): number {
    for (let s = 0; s < MAX_SLOTS; s++) if (!taken.has(s)) return s;
    return -1;
  }
}

/** The `E_MESH_BUSY` message for `target` with `depth` calls queued or running. */
export function busyMessage(target: string, depth: number): string {
  return `E_MESH_BUSY: ${target} has ${depth} calls queued or running (its queue bound); retry later or raise pools.${target}.queue`;
}
