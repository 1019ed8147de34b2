/**
 * Syntax highlighting of diff lines with highlight.js core and a few registered languages (the
 * full bundle is ~1 MB; these are what workspaces mostly hold). The output is highlight.js's HTML,
 * in which the source text is escaped, so it may be set as innerHTML.
 */
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import c from 'highlight.js/lib/languages/c';
import css from 'highlight.js/lib/languages/css';
import go from 'highlight.js/lib/languages/go';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import markdown from 'highlight.js/lib/languages/markdown';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import yaml from 'highlight.js/lib/languages/yaml';

const LANGUAGES = { bash, c, css, go, javascript, json, markdown, python, rust, typescript, xml, yaml };
for (const [name, language] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, language);

const BY_EXTENSION: Record<string, keyof typeof LANGUAGES> = {
  sh: 'bash', bash: 'bash', c: 'c', h: 'c', css: 'css', go: 'go',
  js: 'javascript', mjs: 'javascript', cjs: 'javascript', jsx: 'javascript',
  json: 'json', md: 'markdown', py: 'python', rs: 'rust', ts: 'typescript', mts: 'typescript', cts: 'typescript', tsx: 'typescript',
  html: 'xml', htm: 'xml', xml: 'xml', svg: 'xml', yml: 'yaml', yaml: 'yaml', wit: 'rust',
};

/** The registered language for a file path (by extension), or undefined when there is none. */
export function languageFor(path: string): string | undefined {
  const dot = path.lastIndexOf('.');
  if (dot < 0 || dot < path.lastIndexOf('/')) return undefined;
  return BY_EXTENSION[path.slice(dot + 1).toLowerCase()];
}

/**
 * Highlight consecutive lines of one file together (so a construct spanning lines, such as a
 * block comment or a template string, is coloured on each of them) and return one HTML string
 * per input line; each is balanced (spans open at a line break are closed at its end and
 * reopened on the next line). Without a language the lines are only escaped.
 */
export function highlightLines(lines: readonly string[], language: string | undefined): string[] {
  if (!language) return lines.map(escapeHtml);
  return splitHighlighted(hljs.highlight(lines.join('\n'), { language, ignoreIllegals: true }).value, lines.length);
}

const TAG = /<span class="[^"]*">|<\/span>|\n/g;

/** Split highlight.js HTML at its line breaks into `count` balanced fragments. */
export function splitHighlighted(html: string, count: number): string[] {
  const out: string[] = [];
  const open: string[] = [];
  let line = '';
  let last = 0;
  for (const match of html.matchAll(TAG)) {
    line += html.slice(last, match.index);
    last = match.index + match[0].length;
    if (match[0] === '\n') {
      out.push(line + '</span>'.repeat(open.length));
      line = open.join('');
    } else if (match[0] === '</span>') {
      open.pop();
      line += match[0];
    } else {
      open.push(match[0]);
      line += match[0];
    }
  }
  out.push(line + html.slice(last));
  while (out.length < count) out.push('');
  return out.slice(0, count);
}

/** Escape `& < > " '` for HTML text and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
