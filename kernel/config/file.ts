/**
 * The configuration file: `warden.config.json` or `warden.config.toml` in the data directory,
 * read into a plain value. Syntax errors carry the line and column, never the file's text (it
 * may hold a secret by mistake).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { WardenError } from '../errors.js';

/** File names the kernel looks for in its data directory. */
export const CONFIG_FILES = ['warden.config.json', 'warden.config.toml'] as const;

/** One problem in the configuration: the field's dotted path ('' for the whole file) and what is wrong. */
export interface ConfigIssue {
  path: string;
  message: string;
  /** 1-based position of a syntax error. */
  line?: number;
  column?: number;
}

/**
 * The configuration file of `dataDir`, or null when it has none.
 * @throws WardenError `E_CONFIG` when both `warden.config.json` and `warden.config.toml` exist
 */
export function configFile(dataDir: string): string | null {
  const present = CONFIG_FILES.map((name) => join(dataDir, name)).filter((path) => existsSync(path));
  if (present.length > 1) {
    throw configError(present.join(' and '), [{ path: '', message: `both ${CONFIG_FILES.join(' and ')} exist; keep one` }]);
  }
  return present[0] ?? null;
}

/** An `E_CONFIG` error: one line per issue (`FILE: field.path: message`), the issues in `detail`. */
export function configError(file: string, issues: ConfigIssue[]): WardenError {
  const lines = issues.map((i) => (i.line !== undefined ? `${file}:${i.line}:${i.column}: ${i.message}` : `${file}: ${i.path || '(root)'}: ${i.message}`));
  return new WardenError('E_CONFIG', lines.join('\n'), { detail: { file, issues } });
}

/**
 * Read and parse a configuration file (TOML when it ends in `.toml`, JSON otherwise).
 * @throws WardenError `E_CONFIG` when it cannot be read or parsed, with the line and column
 */
export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').replace(/^\uFEFF/, '');
  } catch (cause) {
    throw configError(path, [{ path: '', message: `cannot read: ${(cause as NodeJS.ErrnoException).code ?? 'error'}` }]);
  }
  if (path.endsWith('.toml')) {
    try {
      return parseToml(text);
    } catch (cause) {
      if (!(cause instanceof TomlError)) throw cause;
      // The message's first line only: the rest quotes the file.
      const reason = cause.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw configError(path, [{ path: '', line: cause.line, column: cause.column, message: `not valid TOML: ${reason}` }]);
    }
  }
  try {
    return JSON.parse(text);
  } catch {
    // V8's message may quote the text; locate the error ourselves instead.
    const at = jsonSyntaxError(text);
    const { line, column } = position(text, at.offset);
    throw configError(path, [{ path: '', line, column, message: `not valid JSON: ${at.message}` }]);
  }
}

/** 1-based line and column of `offset` in `text`. */
function position(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n') };
}

class SyntaxAt extends Error {
  constructor(readonly offset: number, message: string) {
    super(message);
  }
}

const NUMBER = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

/** Where and why `text` (which `JSON.parse` refused) is not JSON (RFC 8259). */
function jsonSyntaxError(text: string): { offset: number; message: string } {
  let i = 0;
  const fail = (message: string): never => {
    throw new SyntaxAt(i, i >= text.length ? `${message} (the file ends here)` : message);
  };
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const string = () => {
    i++;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text[i]!;
      if (c === '"') return void i++;
      if (c === '\\') {
        const next = text[i + 1] ?? '';
        if ('"\\/bfnrt'.includes(next) && next !== '') i += 2;
        else if (next === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
        else fail('invalid escape in a string');
      } else if (c.charCodeAt(0) < 0x20) fail('line break or control character in a string (write \\n)');
      else i++;
    }
  };
  const value = (): void => {
    space();
    const c = text[i];
    if (c === '{') {
      i++;
      space();
      if (text[i] === '}') return void i++;
      for (;;) {
        space();
        if (text[i] !== '"') fail('expected a double-quoted property name');
        string();
        space();
        if (text[i] !== ':') fail("expected ':' after the property name");
        i++;
        value();
        space();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return void i++;
        else fail("expected ',' or '}' after a property value");
      }
    }
    if (c === '[') {
      i++;
      space();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        space();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return void i++;
        else fail("expected ',' or ']' after an array element");
      }
    }
    if (c === '"') return string();
    NUMBER.lastIndex = i;
    if (NUMBER.test(text)) return void (i = NUMBER.lastIndex);
    for (const literal of ['true', 'false', 'null']) if (text.startsWith(literal, i)) return void (i += literal.length);
    fail('expected a value (object, array, string, number, true, false or null)');
  };
  try {
    value();
    space();
    if (i < text.length) fail('unexpected text after the end of the JSON value');
    return { offset: i, message: 'not JSON' };
  } catch (err) {
    if (err instanceof SyntaxAt) return { offset: err.offset, message: err.message };
    return { offset: 0, message: 'nested too deeply' };
  }
}
