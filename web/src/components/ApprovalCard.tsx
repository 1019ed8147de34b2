/** A pending approval with its Approve and Deny buttons (`POST /api/approvals/:id {decision}`). */
import { useState } from 'preact/hooks';
import type { Approval } from '../state/index.ts';
import { api, ApiError } from '../lib/api.ts';
import { formatMs } from '../lib/format.ts';

/** The card; it disappears by itself when the approval's status changes in the state document. */
export function ApprovalCard(props: { approval: Approval; now: number }) {
  const { approval } = props;
  const [busy, setBusy] = useState<'approve' | 'deny' | null>(null);
  const [error, setError] = useState('');
  const decide = async (decision: 'approve' | 'deny') => {
    setBusy(decision);
    setError('');
    try {
      await api(`/api/approvals/${encodeURIComponent(approval.id)}`, { method: 'POST', body: { decision } });
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
      setBusy(null);
    }
  };
  const left = approval.expiresAt - props.now;
  return (
    <article class="approval" data-approval={approval.id} aria-label={`approval ${approval.subject}`}>
      <div class="approval-head">
        <span class="approval-icon" aria-hidden="true">?</span>
        <div>
          <h3>Approval needed</h3>
          <p class="muted small">
            {approval.component} wants to {verb(approval.kind)} · {approval.rule}
          </p>
        </div>
        <span class="spacer" />
        <span class="muted small nowrap" title={new Date(approval.expiresAt).toLocaleString()}>
          {left > 0 ? `expires in ${formatMs(left)}` : 'expiring'}
        </span>
      </div>
      <code class="approval-subject">{approval.subject}</code>
      {approval.detail && <pre class="approval-detail">{approval.detail}</pre>}
      <div class="approval-actions">
        <button type="button" class="btn btn-approve" disabled={busy !== null} onClick={() => void decide('approve')}>
          {busy === 'approve' ? 'Approving…' : 'Approve'}
        </button>
        <button type="button" class="btn btn-deny" disabled={busy !== null} onClick={() => void decide('deny')}>
          {busy === 'deny' ? 'Denying…' : 'Deny'}
        </button>
        {error && <span class="error-text">{error}</span>}
      </div>
    </article>
  );
}

function verb(kind: Approval['kind']): string {
  switch (kind) {
    case 'tool':
      return 'call a tool';
    case 'mesh':
      return 'call a component';
    case 'commit':
      return 'commit the session';
    case 'http':
      return 'make an HTTP request';
  }
}
