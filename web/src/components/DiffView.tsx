/** A session's diff: one collapsible card per changed file, hunks with line numbers and highlighted code. */
import { useMemo } from 'preact/hooks';
import type { FileChange } from '../../../kernel/vfs/changes.ts';
import { parseUnifiedDiff, type DiffHunk } from '../lib/diff.ts';
import { highlightLines, languageFor } from '../lib/highlight.ts';
import { plural } from '../lib/format.ts';

/** Every file of the diff, or a note when the session changed nothing. */
export function DiffView(props: { diff: FileChange[] }) {
  const added = props.diff.reduce((n, c) => n + (c.added ?? 0), 0);
  const removed = props.diff.reduce((n, c) => n + (c.removed ?? 0), 0);
  return (
    <section id="diff" class="panel">
      <header class="panel-head">
        <h2>Changes</h2>
        <span class="muted">
          {plural(props.diff.length, 'file')} <span class="plus">+{added}</span> <span class="minus">−{removed}</span>
        </span>
      </header>
      {props.diff.length === 0 && <p class="muted pad">The session changed nothing.</p>}
      {props.diff.map((change) => <FileDiff key={change.path} change={change} />)}
    </section>
  );
}

function FileDiff({ change }: { change: FileChange }) {
  const language = languageFor(change.path);
  const hunks = useMemo(() => (change.unified ? parseUnifiedDiff(change.unified) : []), [change.unified]);
  return (
    <details class="file" open data-file={change.path}>
      <summary>
        <span class={`kind kind-${change.kind}`}>{change.kind}</span>
        <span class="file-path">
          {change.from && <span class="muted">{change.from} → </span>}
          {change.path}
        </span>
        {(change.added !== undefined || change.removed !== undefined) && (
          <span class="file-stat">
            <span class="plus">+{change.added ?? 0}</span> <span class="minus">−{change.removed ?? 0}</span>
          </span>
        )}
      </summary>
      {change.unified === undefined ? (
        <p class="muted pad">{change.kind === 'renamed' ? 'Renamed without a change.' : 'Binary or large file: no text diff.'}</p>
      ) : (
        <div class="diff-scroll">
          <table class="diff">
            {hunks.map((hunk, i) => <Hunk key={i} hunk={hunk} language={language} />)}
          </table>
        </div>
      )}
    </details>
  );
}

/**
 * One hunk. Each side (old: context + removed lines; new: context + added lines) is highlighted
 * as one run of code, so multi-line constructs keep their colours.
 */
function Hunk({ hunk, language }: { hunk: DiffHunk; language: string | undefined }) {
  const html = useMemo(() => {
    const oldSide = hunk.lines.filter((l) => l.kind === 'context' || l.kind === 'del');
    const newSide = hunk.lines.filter((l) => l.kind === 'context' || l.kind === 'add');
    const oldHtml = highlightLines(oldSide.map((l) => l.text), language);
    const newHtml = highlightLines(newSide.map((l) => l.text), language);
    const out = new Map<object, string>();
    oldSide.forEach((l, i) => out.set(l, oldHtml[i]!));
    newSide.forEach((l, i) => out.set(l, newHtml[i]!));
    return out;
  }, [hunk, language]);
  return (
    <tbody>
      <tr class="hunk-head">
        <td class="ln" colSpan={2} />
        <td class="code" colSpan={2}>
          {hunk.header} <span class="muted">{hunk.section}</span>
        </td>
      </tr>
      {hunk.lines.map((line, i) =>
        line.kind === 'note' ? (
          <tr key={i} class="line note">
            <td class="ln" colSpan={2} />
            <td class="mark" />
            <td class="code muted">{line.text}</td>
          </tr>
        ) : (
          <tr key={i} class={`line ${line.kind}`}>
            <td class="ln">{line.old ?? ''}</td>
            <td class="ln">{line.new ?? ''}</td>
            <td class="mark">{line.kind === 'add' ? '+' : line.kind === 'del' ? '−' : ' '}</td>
            <td class="code hljs" dangerouslySetInnerHTML={{ __html: html.get(line) ?? '' }} />
          </tr>
        ),
      )}
    </tbody>
  );
}
