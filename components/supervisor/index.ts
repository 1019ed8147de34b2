// The supervisor: receives a task, begins its session, classifies it (a `category` progress
// step the kernel routes inference by), delegates to the coder agent over the mesh, records
// the task in its own SQL scope, and reports the diff.
import { call } from 'warden:kernel/mesh@0.1.0';
import { begin, diff } from 'warden:kernel/session@0.1.0';
import { execute } from 'warden:kernel/sql@0.1.0';
import { report } from 'warden:kernel/progress@0.1.0';
import { errorText } from '../lib/errors.js';
import { categorize } from './category.js';
import type { Outcome, Task } from 'warden:kernel/types@0.1.0';

function record(sql: string, params: Array<string | number>): void {
  execute(
    sql,
    params.map((p) => (typeof p === 'number' ? { tag: 'integer', val: p as unknown as bigint } : { tag: 'text', val: p })),
  );
}

export const supervisor = {
  handleTask(task: Task): Outcome {
    execute(
      'CREATE TABLE IF NOT EXISTS handled_tasks (id TEXT PRIMARY KEY, prompt TEXT NOT NULL, session_id TEXT, outcome TEXT, turns INTEGER)',
      [],
    );
    let sessionId: string;
    if (task.sessionId) {
      // A resumed task goes on in the session it had.
      sessionId = task.sessionId;
      report('session', `resumed in session ${sessionId}`);
    } else {
      try {
        sessionId = begin(task.workspace);
      } catch (err) {
        throw `cannot begin a session on ${task.workspace}: ${errorText(err)}`;
      }
      report('session', `began session ${sessionId} on ${task.workspace}`);
    }
    record('INSERT OR REPLACE INTO handled_tasks (id, prompt, session_id) VALUES (?, ?, ?)', [task.id, task.prompt, sessionId]);
    report('category', categorize(task.prompt));
    let outcome: Outcome;
    try {
      const result = call('coder', 'run', { tag: 'json', val: JSON.stringify({ ...task, sessionId }) });
      outcome = JSON.parse(result.tag === 'json' ? result.val : '{}') as Outcome;
    } catch (err) {
      record('UPDATE handled_tasks SET outcome = ? WHERE id = ?', [`failed: ${errorText(err)}`, task.id]);
      throw `coder failed: ${errorText(err)}`;
    }
    record('UPDATE handled_tasks SET outcome = ?, turns = ? WHERE id = ?', [outcome.summary, outcome.turns, task.id]);
    const changes = diff(sessionId);
    report('diff', `${changes.length} file(s) changed: ${changes.map((c) => `${c.kind} ${c.path}`).join(', ')}`);
    return outcome;
  },
};
