/**
 * `/tasks/:id`: one task, live — narrowed to `/tasks/<id>` plus `/approvals` (filtered to this
 * task): status, pending approvals with Approve/Deny, the timeline, the diff, usage and details.
 */
import { useEffect } from 'preact/hooks';
import { useDocument, type Approval, type TaskState } from '../state/index.ts';
import { linkProps } from '../lib/router.ts';
import { useNow } from '../lib/store.ts';
import { Badge } from '../components/Badge.tsx';
import { ApprovalCard } from '../components/ApprovalCard.tsx';
import { Timeline } from '../components/Timeline.tsx';
import { DiffView } from '../components/DiffView.tsx';
import { TaskSidebar } from '../components/TaskSidebar.tsx';

export function TaskPage(props: { id: string }) {
  const task = useDocument<TaskState>(`/tasks/${props.id}`);
  const approvals = useDocument<Record<string, Approval>>('/approvals');
  const now = useNow(1000);
  const mine = Object.values(approvals.state ?? {})
    .filter((a) => a.taskId === props.id)
    .sort((a, b) => a.createdAt - b.createdAt);
  const pending = mine.filter((a) => a.status === 'pending');
  const t = task.state;
  useEffect(() => {
    document.title = t ? `${t.status} · ${t.prompt.slice(0, 60)} · Warden` : 'Warden';
    return () => void (document.title = 'Warden');
  }, [t?.status, t?.prompt]);

  if (!t) {
    return (
      <div class="page">
        <a class="back" {...linkProps('/')}>
          ← Tasks
        </a>
        <section class="panel pad">
          {task.loaded ? (
            <p>
              No task <code>{props.id}</code> in this kernel.
            </p>
          ) : (
            <p class="muted">Loading {props.id}…</p>
          )}
        </section>
      </div>
    );
  }
  return (
    <div class="page" data-task-page={t.id}>
      <a class="back" {...linkProps('/')}>
        ← Tasks
      </a>
      <header class="task-head">
        <div class="task-title">
          <Badge id="task-status" status={t.status} />
          <h1>{t.prompt}</h1>
        </div>
        <p class="muted small">
          <code>{t.id}</code> · <code>{t.model}</code> · {t.workspace}
        </p>
      </header>

      {t.stopReason && (
        <div class="notice notice-warn" id="stop-reason">
          <strong>Stopped by the kernel:</strong> {t.stopReason}
        </div>
      )}
      {t.error && !t.stopReason && (
        <div class="notice notice-error" id="task-error">
          {t.error}
        </div>
      )}
      {t.summary && (
        <div class="notice notice-ok" id="task-summary">
          {t.summary}
        </div>
      )}

      {pending.length > 0 && (
        <section class="approvals" id="approvals" aria-label="pending approvals">
          {pending.map((a) => (
            <ApprovalCard key={a.id} approval={a} now={now} />
          ))}
        </section>
      )}

      <div class="layout-task">
        <div class="main-col">
          <Timeline task={t} approvals={mine} />
          {t.diff && <DiffView diff={t.diff} />}
        </div>
        <TaskSidebar task={t} now={now} />
      </div>
    </div>
  );
}
