/** The facts beside a task's timeline: usage and cost per target, privacy, fallbacks, session. */
import { useState } from 'preact/hooks';
import type { TaskState } from '../state/index.ts';
import { api, ApiError } from '../lib/api.ts';
import { formatAge, formatCost, formatMs, formatTokens } from '../lib/format.ts';
import { Badge } from './Badge.tsx';

export function TaskSidebar(props: { task: TaskState; now: number }) {
  const { task, now } = props;
  const { usage } = task;
  const targets = Object.entries(usage.byTarget ?? {});
  const fallbacks = Object.values(task.fallbacks ?? {}).sort((a, b) => a.ts - b.ts);
  return (
    <aside class="sidebar">
      <section class="panel" id="usage">
        <header class="panel-head">
          <h2>Usage</h2>
        </header>
        <dl class="stats">
          <div>
            <dt>Prompt</dt>
            <dd>{formatTokens(usage.promptTokens)}</dd>
          </div>
          <div>
            <dt>Completion</dt>
            <dd>{formatTokens(usage.completionTokens)}</dd>
          </div>
          <div>
            <dt>Cost</dt>
            <dd id="task-cost">{formatCost(usage.costUsd)}</dd>
          </div>
        </dl>
        {targets.length > 0 && (
          <table class="mini">
            <thead>
              <tr>
                <th>Target</th>
                <th class="num">Req</th>
                <th class="num">Tokens</th>
                <th class="num">Cost</th>
              </tr>
            </thead>
            <tbody>
              {targets.map(([target, t]) => (
                <tr key={target}>
                  <td>
                    <code>{target}</code>
                  </td>
                  <td class="num">{t.requests}</td>
                  <td class="num">{formatTokens(t.promptTokens + t.completionTokens)}</td>
                  <td class="num">{formatCost(t.costUsd)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section class="panel">
        <header class="panel-head">
          <h2>Details</h2>
        </header>
        <dl class="facts">
          <dt>Task</dt>
          <dd>
            <code>{task.id}</code>
          </dd>
          <dt>Model</dt>
          <dd>
            <code>{task.model}</code>
          </dd>
          <dt>Workspace</dt>
          <dd>
            <code class="break">{task.workspace}</code>
          </dd>
          <dt>Started</dt>
          <dd title={new Date(task.createdAt).toLocaleString()}>{formatAge(task.createdAt, now)}</dd>
          {task.finishedAt !== undefined && (
            <>
              <dt>Took</dt>
              <dd>{formatMs(task.finishedAt - task.createdAt)}</dd>
            </>
          )}
          {task.category && (
            <>
              <dt>Category</dt>
              <dd>{task.category}</dd>
            </>
          )}
          {task.privacy && (
            <>
              <dt>Privacy</dt>
              <dd id="task-privacy">
                <Badge status={task.privacy.level} tone={`privacy-${task.privacy.level}`} />
                {task.privacy.reason && <span class="muted small block">{task.privacy.reason}</span>}
              </dd>
            </>
          )}
          <dt>Session</dt>
          <dd>
            {task.sessionId ? (
              <>
                <code>{task.sessionId}</code> {task.sessionStatus && <Badge status={task.sessionStatus} tone={`session-${task.sessionStatus}`} />}
              </>
            ) : (
              <span class="muted">none yet</span>
            )}
          </dd>
        </dl>
        <SessionActions task={task} />
      </section>

      {fallbacks.length > 0 && (
        <section class="panel" id="fallbacks">
          <header class="panel-head">
            <h2>Fallbacks</h2>
          </header>
          <ul class="fallbacks">
            {fallbacks.map((f, i) => (
              <li key={i}>
                <span class="muted small">turn {f.turn}</span> <code>{f.from}</code> → <code>{f.to}</code>
                <span class="muted small block">{f.reason}</span>
              </li>
            ))}
          </ul>
        </section>
      )}
    </aside>
  );
}

/** Commit or discard an open session once the task is no longer running. */
function SessionActions({ task }: { task: TaskState }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  if (!task.sessionId || task.sessionStatus !== 'open' || task.status === 'running' || task.status === 'queued') return null;
  const act = async (action: 'commit' | 'discard') => {
    setBusy(true);
    setError('');
    try {
      await api(`/api/sessions/${task.sessionId}/${action}`, { method: 'POST' });
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="session-actions">
      <button type="button" id="commit" class="btn btn-primary" disabled={busy} onClick={() => void act('commit')}>
        Commit to workspace
      </button>
      <button type="button" id="discard" class="btn" disabled={busy} onClick={() => void act('discard')}>
        Discard
      </button>
      {error && <p class="error-text">{error}</p>}
    </div>
  );
}
