/**
 * WIT errors with a place. The WIT parser inside componentize-qjs (and jco's wasm-tools) reports
 * a syntax error as its message only — "expected ';', found keyword `import`" — without the file
 * or position. This finds them: the file is the one whose text alone fails with that message, and
 * the position is the end of the shortest prefix of it that fails the same way (a parser reading
 * left to right stops at the first bad token; every shorter prefix fails at its end instead).
 * An error about a name (`foo` does not exist) is placed at the name's first use.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { componentEmbed } from '@bytecodealliance/jco-transpile/wasm-tools';
import type { BuildError } from './typecheck.js';

/** The parser's message for one WIT text, or null when it parses. */
async function parseError(text: string): Promise<string | null> {
  try {
    await componentEmbed({ witSource: text, dummy: true });
    return null;
  } catch (err) {
    return String((err as { message?: unknown }).message ?? err);
  }
}

/** Every `.wit` file under `dir`, sorted. */
export function witFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return witFiles(path);
    return name.endsWith('.wit') ? [path] : [];
  });
}

/** 1-based line and column of offset `at` in `text`. */
function lineColumn(text: string, at: number): { line: number; column: number } {
  const before = text.slice(0, at).split('\n');
  return { line: before.length, column: before[before.length - 1]!.length + 1 };
}

const IDENT = /[A-Za-z0-9_%-]/;
/** Messages of the parser proper (names that do not resolve are placed by {@link nameAt}). */
const SYNTAX = /^(expected|unexpected|unterminated|invalid character)|found /i;

/**
 * Offsets where a prefix ends on a whole token: where the text changes between identifier
 * characters and anything else, so a cut never turns `export` into the identifier `exp`.
 */
function tokenEnds(text: string): number[] {
  const ends: number[] = [];
  for (let i = 1; i <= text.length; i++) {
    if (i === text.length || !(IDENT.test(text[i - 1]!) && IDENT.test(text[i]!))) ends.push(i);
  }
  return ends;
}

/** Offset of the token the parser stopped at, or null when no prefix reproduces `message`. */
async function syntaxErrorAt(text: string, message: string): Promise<number | null> {
  const ends = tokenEnds(text);
  let lo = 0;
  let hi = ends.length - 1;
  if ((await parseError(text.slice(0, ends[hi]))) !== message) return null;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((await parseError(text.slice(0, ends[mid]))) === message) hi = mid;
    else lo = mid + 1;
  }
  // The last token of the shortest failing prefix: back over an identifier, or one character.
  let start = ends[lo]! - 1;
  while (start > 0 && IDENT.test(text[start]!) && IDENT.test(text[start - 1]!)) start--;
  return start;
}

/** First use of `name` as a whole word outside comments, or null. */
function nameAt(text: string, name: string): number | null {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`(^|[^A-Za-z0-9_-])(${escaped})(?![A-Za-z0-9_-])`, 'gm');
  for (const m of text.matchAll(pattern)) {
    const at = m.index + m[1]!.length;
    const lineStart = text.lastIndexOf('\n', at) + 1;
    if (!text.slice(lineStart, at).includes('//')) return at;
  }
  return null;
}

/**
 * Place a WIT error of the WIT directory `witDir`.
 * @param message the parser's message as componentize-qjs reported it (it may wrap the cause)
 * @param base the directory file names are made relative to (the component's)
 * @returns the error with its file, line and column; the directory itself at 1:1 when it cannot be placed
 */
export async function locateWitError(witDir: string, message: string, base: string): Promise<BuildError> {
  const files = witFiles(witDir);
  const cause = message.replace(/^.*?: (failed to parse package: \S+: )?/, '').trim();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const own = await parseError(text);
    if (own === null || !message.endsWith(own) || !SYNTAX.test(own)) continue;
    const at = await syntaxErrorAt(text, own);
    if (at !== null) return { file: relative(base, file), ...lineColumn(text, at), message: `WIT: ${own}` };
  }
  const named = /`([^`]+)`/.exec(cause)?.[1];
  if (named) {
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const at = nameAt(text, named);
      if (at !== null) return { file: relative(base, file), ...lineColumn(text, at), message: `WIT: ${cause}` };
    }
  }
  return { file: relative(base, witDir) || '.', line: 1, column: 1, message: `WIT: ${cause}` };
}
