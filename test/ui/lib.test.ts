// The web UI's pure helpers: unified-diff parsing (against diffs made by the `diff` package, as
// the kernel makes them), highlighting split into balanced per-line HTML, display formats, and
// the server's choice of which requests get the UI's index.html.
import { describe, expect, it } from 'vitest';
import { createTwoFilesPatch } from 'diff';
import { parseUnifiedDiff } from '../../web/src/lib/diff.js';
import { escapeHtml, highlightLines, languageFor, splitHighlighted } from '../../web/src/lib/highlight.js';
import { formatAge, formatCallDuration, formatCost, formatMs, formatTokens, plural } from '../../web/src/lib/format.js';
import { isPageRequest } from '../../kernel/server/index.js';

describe('parseUnifiedDiff', () => {
  it('numbers context, removed and added lines on each side and keeps the no-newline note', () => {
    const unified = createTwoFilesPatch('a/x.ts', 'b/x.ts', '/* a\n b */\nlet x = 1;\nconst y = 2;\n', '/* a\n b */\nlet x = 10;\nconst y = 2;\nexport {}', undefined, undefined, { context: 3 });
    const [hunk, ...rest] = parseUnifiedDiff(unified);
    expect(rest).toEqual([]);
    expect(hunk!.header).toBe('@@ -1,4 +1,5 @@');
    expect(hunk!.lines).toEqual([
      { kind: 'context', text: '/* a', old: 1, new: 1 },
      { kind: 'context', text: ' b */', old: 2, new: 2 },
      { kind: 'del', text: 'let x = 1;', old: 3 },
      { kind: 'add', text: 'let x = 10;', new: 3 },
      { kind: 'context', text: 'const y = 2;', old: 4, new: 4 },
      { kind: 'add', text: 'export {}', new: 5 },
      { kind: 'note', text: 'No newline at end of file' },
    ]);
  });

  it('starts each hunk at its own line numbers and keeps the section text after @@', () => {
    const before = Array.from({ length: 40 }, (_, i) => `line ${i + 1}`);
    const after = [...before];
    after[2] = 'changed 3';
    after[35] = 'changed 36';
    const hunks = parseUnifiedDiff(createTwoFilesPatch('a/f', 'b/f', before.join('\n') + '\n', after.join('\n') + '\n', undefined, undefined, { context: 2 }));
    expect(hunks.map((h) => h.header)).toEqual(['@@ -1,5 +1,5 @@', '@@ -34,5 +34,5 @@']);
    expect(hunks[1]!.lines.find((l) => l.kind === 'del')).toEqual({ kind: 'del', text: 'line 36', old: 36 });
    expect(parseUnifiedDiff('@@ -10,2 +10,2 @@ function main() {\n-a\n+b\n')[0]).toMatchObject({ section: 'function main() {', lines: [{ old: 10 }, { new: 10 }] });
  });

  it('reads an added file (from /dev/null) and ignores headers and stray lines', () => {
    const hunks = parseUnifiedDiff(createTwoFilesPatch('/dev/null', 'b/new.md', '', '# Title\n\ntext\n'));
    expect(hunks).toHaveLength(1);
    expect(hunks[0]!.lines.map((l) => [l.kind, l.new])).toEqual([['add', 1], ['add', 2], ['add', 3]]);
    expect(parseUnifiedDiff('diff --git a/x b/x\nindex 1..2\nnot a hunk\n')).toEqual([]);
  });
});

describe('highlighting', () => {
  it('picks a language by extension, and none for unknown or extensionless files', () => {
    expect(languageFor('src/app.tsx')).toBe('typescript');
    expect(languageFor('lib/help.js')).toBe('javascript');
    expect(languageFor('README.MD')).toBe('markdown');
    expect(languageFor('Makefile')).toBeUndefined();
    expect(languageFor('.config/settings')).toBeUndefined();
    expect(languageFor('a.unknownext')).toBeUndefined();
  });

  it('colours a block comment on every line it spans, each line balanced', () => {
    const lines = highlightLines(['/* one', '   two */ const x = "<b>";'], 'javascript');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe('<span class="hljs-comment">/* one</span>');
    expect(lines[1]).toMatch(/^<span class="hljs-comment">   two \*\/<\/span> <span class="hljs-keyword">const<\/span> x = <span class="hljs-string">&quot;&lt;b&gt;&quot;<\/span>;$/);
    for (const line of lines) expect(line.match(/<span/g)?.length ?? 0).toBe(line.match(/<\/span>/g)?.length ?? 0);
  });

  it('reopens nested spans on the next line and pads to the line count', () => {
    const html = '<span class="a">x<span class="b">y\nz</span>w</span>';
    expect(splitHighlighted(html, 3)).toEqual(['<span class="a">x<span class="b">y</span></span>', '<span class="a"><span class="b">z</span>w</span>', '']);
  });

  it('escapes text without a language, so it is safe as HTML', () => {
    expect(highlightLines(['<img src=x onerror="alert(1)">'], undefined)).toEqual(['&#60;img src=x onerror=&#34;alert(1)&#34;&#62;']);
    expect(escapeHtml(`&'`)).toBe('&#38;&#39;');
    // highlight.js escapes the code it colours too.
    expect(highlightLines(['let s = "<script>";'], 'javascript')[0]).not.toContain('<script>');
  });
});

describe('formats', () => {
  it('ages, durations, tokens, costs and plurals', () => {
    const now = 1_000_000_000;
    expect([0, 4_000, 42_000, 180_000, 5 * 3_600_000, 2 * 86_400_000].map((ago) => formatAge(now - ago, now))).toEqual([
      'just now', 'just now', '42 s ago', '3 min ago', '5 h ago', '2 d ago',
    ]);
    expect(formatAge(now + 5000, now)).toBe('just now');
    expect([850, 1234, 12_345, 60_000, 125_000].map(formatMs)).toEqual(['850 ms', '1.2 s', '12 s', '1 min', '2 min 5 s']);
    expect(formatCallDuration({ durationUs: 420, durationMs: 0 })).toBe('420 µs');
    expect(formatCallDuration({ durationUs: 1_500 })).toBe('2 ms');
    expect(formatCallDuration({ durationMs: 2_500 })).toBe('2.5 s');
    expect(formatCallDuration({})).toBe('');
    expect([950, 12_345, 1_234_567].map(formatTokens)).toEqual(['950', '12k', '1.2M']);
    expect(formatTokens(1_250)).toBe('1.3k');
    expect([undefined, 0, 0.00001, 0.0144, 0.5, 3.14159].map(formatCost)).toEqual(['—', '$0', '<$0.0001', '$0.0144', '$0.5000', '$3.14']);
    expect([plural(1, 'file'), plural(2, 'file'), plural(0, 'entry', 'entries')]).toEqual(['1 file', '2 files', '0 entries']);
  });
});

describe('isPageRequest (the SPA fallback)', () => {
  it('answers page loads of client-side routes with index.html, nothing else', () => {
    const html = 'text/html,application/xhtml+xml,*/*;q=0.8';
    expect(isPageRequest('GET', '/tasks/t-1a2b3c4d', html)).toBe(true);
    expect(isPageRequest('HEAD', '/components?x=1', html)).toBe(true);
    expect(isPageRequest('GET', '/tasks/t-1a2b3c4d', 'application/json')).toBe(false);
    expect(isPageRequest('GET', '/tasks/t-1a2b3c4d', undefined)).toBe(false);
    expect(isPageRequest('POST', '/tasks', html)).toBe(false);
    expect(isPageRequest('GET', '/api/nothing', html)).toBe(false);
    expect(isPageRequest('GET', '//API/state', html)).toBe(false);
    expect(isPageRequest('GET', '/metrics', html)).toBe(false);
    expect(isPageRequest('GET', '/assets/missing.js', html)).toBe(false);
  });
});
