/** The connection indicator in the top bar. */
import { connection$ } from '../state/index.ts';
import { useStore } from '../lib/store.ts';

const LABEL = { live: 'Live', connecting: 'Connecting', resyncing: 'Resyncing', offline: 'Offline' } as const;

/** Live / resyncing (with the resync count) / offline, for every stream the page holds. */
export function ConnectionIndicator() {
  const { status, resyncs, seq } = useStore(connection$);
  const title = `${LABEL[status]} · seq ${seq} · ${resyncs} resync${resyncs === 1 ? '' : 's'} since this page loaded`;
  return (
    <span id="conn" class={`conn conn-${status}`} data-status={status} data-resyncs={resyncs} data-seq={seq} title={title} role="status" aria-live="polite">
      <span class="conn-dot" aria-hidden="true" />
      <span class="conn-label">{LABEL[status]}</span>
      {resyncs > 0 && <span class="conn-resyncs" title="resyncs since this page loaded">↻ {resyncs}</span>}
    </span>
  );
}
