/**
 * Policy rule syntax: parsing `TOOL`, `TOOL(GLOB)`, `mesh:NAME-GLOB`, `commit`, `commit(GLOB)`,
 * `http`, `http(HOST-GLOB)` into matchers, each glob compiled to an anchored RegExp once.
 *
 * Globs: `**` matches any characters including `/` (`**` + `/` also matches no directory at
 * all, and a trailing `/` + `**` also matches the directory itself), `*` any characters within one
 * path segment (not `/`), `?` one character other than `/`; every other character is literal.
 */

/** What a rule applies to. */
export type RuleKind = 'tool' | 'mesh' | 'commit' | 'http';

/** A parsed rule. */
export interface Rule {
  /** The rule as written, e.g. `write-file(src/**)`. */
  text: string;
  kind: RuleKind;
  /** Tool name (tools) or target name (mesh): an exact string when the glob has no wildcard. */
  name: string | RegExp | null;
  /** Glob over the argument: the tool's primary argument, a changed path, a host; null for any. */
  arg: RegExp | null;
}

/** Component names as the registry allows them, with glob wildcards. */
const NAME_GLOB = /^[a-z*?][a-z0-9*?-]*$/;

/**
 * Compile a glob to an anchored RegExp (see the module comment for the syntax).
 * @throws Error when the glob is empty
 */
export function globToRegExp(glob: string): RegExp {
  if (glob.length === 0) throw new Error('empty glob');
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      const atStart = i === 0 || glob[i - 1] === '/';
      i++;
      while (glob[i + 1] === '*') i++;
      if (atStart && glob[i + 1] === '/') {
        // `**/`: zero or more whole directories.
        source += '(?:.*/)?';
        i++;
      } else if (i === glob.length - 1 && source.endsWith('/')) {
        // `dir/**`: the directory itself or anything below it.
        source = `${source.slice(0, -1)}(?:/.*)?`;
      } else {
        source += '.*';
      }
    } else if (c === '*') {
      source += '[^/]*';
    } else if (c === '?') {
      source += '[^/]';
    } else {
      source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}

/** An exact name, or a RegExp when the name holds a wildcard. */
function nameMatcher(name: string): string | RegExp {
  return /[*?]/.test(name) ? globToRegExp(name) : name;
}

/**
 * Parse one rule.
 * @throws Error saying what is wrong with it and what the syntax is
 */
export function parseRule(text: string): Rule {
  const syntax = 'expected TOOL, TOOL(GLOB), mesh:NAME-GLOB, commit, commit(GLOB), http or http(HOST-GLOB)';
  if (text !== text.trim() || text.length === 0) throw new Error(`empty or padded with spaces; ${syntax}`);
  if (text.startsWith('mesh:')) {
    const name = text.slice('mesh:'.length);
    if (!NAME_GLOB.test(name)) throw new Error('mesh:NAME-GLOB needs a component name or glob (lower-case letters, digits, -, * and ?)');
    return { text, kind: 'mesh', name: nameMatcher(name), arg: null };
  }
  const match = /^([^()]+)(?:\((.*)\))?$/.exec(text);
  if (!match) throw new Error(`unbalanced parentheses; ${syntax}`);
  const head = match[1]!;
  const glob = match[2];
  if (glob !== undefined && (glob.length === 0 || /[()]/.test(glob))) throw new Error(`the argument glob is empty or holds parentheses; ${syntax}`);
  const arg = glob === undefined ? null : globToRegExp(glob);
  if (head === 'commit' || head === 'http') return { text, kind: head, name: null, arg: head === 'http' && glob ? globToRegExp(glob.toLowerCase()) : arg };
  if (!NAME_GLOB.test(head)) throw new Error(`"${head}" is not a tool name or glob (lower-case letters, digits, -, * and ?); ${syntax}`);
  return { text, kind: 'tool', name: nameMatcher(head), arg };
}

/** Whether `matcher` (exact string or RegExp) matches `value`. */
export function nameMatches(matcher: string | RegExp, value: string): boolean {
  return typeof matcher === 'string' ? matcher === value : matcher.test(value);
}

/**
 * The primary argument of a tool call, from its JSON input: `path` (or `file`, `filePath`),
 * else `pattern`, else `url`, else `command` — the first that is a string. Paths are
 * normalised the way the session resolves them (`./a`, `/a` and `b/../a` are all `a`), so a
 * rule cannot be dodged by spelling a path differently. Undefined when none is present or the
 * input is not a JSON object.
 */
export function primaryArgument(input: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(input);
  } catch {
    return undefined;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const o = value as Record<string, unknown>;
  for (const key of ['path', 'file', 'filePath']) {
    if (typeof o[key] === 'string') return normalisePath(o[key] as string);
  }
  for (const key of ['pattern', 'url', 'command']) {
    if (typeof o[key] === 'string') return o[key] as string;
  }
  return undefined;
}

/** A session path as rules see it: relative to the session root, `.` and `..` resolved, no leading `/`. */
export function normalisePath(path: string): string {
  const out: string[] = [];
  for (const part of path.split(/[/\\]+/)) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else out.push('..');
    } else out.push(part);
  }
  return out.join('/') || '.';
}
