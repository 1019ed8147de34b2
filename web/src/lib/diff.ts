/**
 * Unified diffs (the format of GNU diff -u and `diff`'s `createTwoFilesPatch`, which the kernel
 * uses for `FileChange.unified`) parsed into hunks of numbered lines for display.
 */

/** One line of a hunk. `old`/`new`: 1-based line numbers on each side (absent where the line does not exist). */
export interface DiffLine {
  kind: 'context' | 'add' | 'del' | 'note';
  /** The line's text without its leading marker (`+`, `-`, space); for `note`, the note (`No newline at end of file`). */
  text: string;
  old?: number;
  new?: number;
}

/** One `@@ -a,b +c,d @@` hunk. */
export interface DiffHunk {
  header: string;
  /** Text after the second `@@` (often the enclosing function), trimmed. */
  section: string;
  lines: DiffLine[];
}

const HUNK = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@ ?(.*)$/;

/**
 * Parse the hunks of a unified diff. Header lines before the first hunk (`===`, `---`, `+++`,
 * `diff --git`, `index`) are skipped; a `\ No newline at end of file` marker becomes a `note`.
 * Lines that fit no hunk are ignored rather than thrown on: the input is display-only.
 */
export function parseUnifiedDiff(unified: string): DiffHunk[] {
  const hunks: DiffHunk[] = [];
  let hunk: DiffHunk | undefined;
  let oldNo = 0;
  let newNo = 0;
  const lines = unified.split('\n');
  // A trailing newline leaves one empty string that is not a context line.
  if (lines[lines.length - 1] === '') lines.pop();
  for (const line of lines) {
    const header = HUNK.exec(line);
    if (header) {
      oldNo = Number(header[1]);
      newNo = Number(header[2]);
      hunk = { header: line.slice(0, line.lastIndexOf('@@') + 2), section: header[3]!.trim(), lines: [] };
      hunks.push(hunk);
      continue;
    }
    if (!hunk) continue;
    const marker = line[0];
    const text = line.slice(1);
    if (marker === '+') hunk.lines.push({ kind: 'add', text, new: newNo++ });
    else if (marker === '-') hunk.lines.push({ kind: 'del', text, old: oldNo++ });
    else if (marker === ' ' || line === '') hunk.lines.push({ kind: 'context', text, old: oldNo++, new: newNo++ });
    else if (marker === '\\') hunk.lines.push({ kind: 'note', text: line.slice(1).trim() });
  }
  return hunks;
}
