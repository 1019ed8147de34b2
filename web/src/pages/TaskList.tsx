/** `/`: the tasks, live, newest first, and the form to submit one (`POST /api/tasks`). */
import { useState } from 'preact/hooks';
import { useDocument, type Approval, type TaskState } from '../state/index.ts';
import { api, ApiError } from '../lib/api.ts';
import { linkProps, navigate } from '../lib/router.ts';
import { useNow } from '../lib/store.ts';
import { formatAge, formatCost, formatTokens } from '../lib/format.ts';
import { Badge, Cell } from '../components/Badge.tsx';

export function TaskListPage() {
  const tasks = useDocument<Record<string, TaskState>>('/tasks');
  const approvals = useDocument<Record<string, Approval>>('/approvals');
  const now = useNow(5000);
  const list = Object.values(tasks.state ?? {}).sort((a, b) => b.createdAt - a.createdAt);
  const pending = new Map<string, number>();
  for (const a of Object.values(approvals.state ?? {})) {
    if (a.status === 'pending' && a.taskId) pending.set(a.taskId, (pending.get(a.taskId) ?? 0) + 1);
  }
  return (
    <div class="layout-list">
      <SubmitForm />
      <section class="panel" aria-labelledby="tasks-title">
        <header class="panel-head">
          <h2 id="tasks-title">Tasks</h2>
          <span class="muted">{tasks.loaded ? `${list.length} total` : 'loading…'}</span>
        </header>
        {tasks.loaded && list.length === 0 && <p class="muted pad">No tasks yet. Describe one and press Run.</p>}
        {list.length > 0 && (
          <table class="table cards" id="tasks">
            <thead>
              <tr>
                <th>Status</th>
                <th>Task</th>
                <th>Model</th>
                <th>Age</th>
                <th class="num">Tokens</th>
                <th class="num">Cost</th>
              </tr>
            </thead>
            <tbody>
              {list.map((t) => (
                <tr key={t.id} data-task={t.id} class="clickable" onClick={(e) => !(e.target as Element).closest('a') && navigate(`/tasks/${t.id}`)}>
                  <Cell label="Status">
                    <Badge status={t.status} />
                    {pending.has(t.id) && (
                      <Badge status="pending" tone="pending">
                        approval
                      </Badge>
                    )}
                  </Cell>
                  <td data-label="Task" class="task-cell">
                    <a {...linkProps(`/tasks/${t.id}`)} class="task-prompt">
                      {t.prompt}
                    </a>
                    <span class="muted small">
                      {t.id} · {t.workspace}
                    </span>
                  </td>
                  <Cell label="Model">
                    <code>{t.model}</code>
                  </Cell>
                  <Cell label="Age" class="nowrap" title={new Date(t.createdAt).toLocaleString()}>
                    {formatAge(t.createdAt, now)}
                  </Cell>
                  <Cell label="Tokens" class="num">
                    {formatTokens(t.usage.promptTokens + t.usage.completionTokens)}
                    <span class="phone-only"> tokens</span>
                  </Cell>
                  <Cell label="Cost" class="num">
                    {formatCost(t.usage.costUsd)}
                  </Cell>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </div>
  );
}

const REMEMBER = 'warden.newTask';

/** The new-task form; workspace and model are remembered in localStorage for the next one. */
function SubmitForm() {
  const remembered = readRemembered();
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const onSubmit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    const task = String(form.get('task') ?? '');
    const workspace = String(form.get('workspace') ?? '').trim();
    const model = String(form.get('model') ?? '').trim();
    setBusy(true);
    setError('');
    try {
      const { id } = await api<{ id: string }>('/api/tasks', { method: 'POST', body: { task, workspace, ...(model ? { model } : {}) } });
      localStorage.setItem(REMEMBER, JSON.stringify({ workspace, model }));
      navigate(`/tasks/${id}`);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : `could not reach the kernel: ${String(err)}`);
      setBusy(false);
    }
  };
  return (
    <form id="submit" class="panel form" onSubmit={(e) => void onSubmit(e)}>
      <header class="panel-head">
        <h2>New task</h2>
      </header>
      <div class="pad">
        <label>
          <span>Task</span>
          <textarea name="task" rows={4} required placeholder="Rename parseArgs to parseArguments everywhere" />
        </label>
        <label>
          <span>Workspace</span>
          <input name="workspace" required placeholder="/home/me/src/repo" defaultValue={remembered.workspace} autocomplete="off" spellcheck={false} />
        </label>
        <label>
          <span>
            Model <span class="muted">(optional)</span>
          </span>
          <input name="model" placeholder="qwen2.5-coder:7b or model@backend" defaultValue={remembered.model} autocomplete="off" spellcheck={false} />
        </label>
        <button type="submit" class="btn btn-primary btn-block" disabled={busy}>
          {busy ? 'Starting…' : 'Run'}
        </button>
        {error && (
          <p id="submit-error" class="error-text" role="alert">
            {error}
          </p>
        )}
      </div>
    </form>
  );
}

function readRemembered(): { workspace: string; model: string } {
  try {
    const value = JSON.parse(localStorage.getItem(REMEMBER) ?? '{}') as { workspace?: unknown; model?: unknown };
    return { workspace: typeof value.workspace === 'string' ? value.workspace : '', model: typeof value.model === 'string' ? value.model : '' };
  } catch {
    return { workspace: '', model: '' };
  }
}
