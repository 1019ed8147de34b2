// grep {pattern, path?, glob?}: lines matching a JavaScript regular expression, as path:line:text.
import { clean, failed, invalid, readBytes, typeOf, walkFiles } from '../lib/fs.js';
import { parseInput, str } from '../lib/input.js';
import { decodeUtf8, looksBinary } from '../lib/text.js';

const MAX_MATCHES = 500;
const MAX_FILES = 20000;
const MAX_FILE_BYTES = 1 << 20;

/** `**` any path, `*` any name part, `?` one character; a glob without `/` matches the file name. */
function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += glob[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += glob[i + 2] === '/' ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export const tool = {
  describe() {
    return {
      name: 'grep',
      description: `Search files of the workspace for a JavaScript regular expression. Returns "path:line:text" lines, at most ${MAX_MATCHES}.`,
      inputSchema: JSON.stringify({
        type: 'object',
        properties: {
          pattern: { type: 'string', description: 'JavaScript regular expression' },
          path: { type: 'string', description: 'File or directory to search (default: the root)' },
          glob: { type: 'string', description: 'Only files matching this glob, e.g. "*.ts" or "src/**/*.js"' },
        },
        required: ['pattern'],
        additionalProperties: false,
      }),
    };
  },
  call(input: string): string {
    const args = parseInput(input);
    let regex: RegExp;
    try {
      regex = new RegExp(str(args, 'pattern'));
    } catch (err) {
      throw invalid(`pattern is not a valid regular expression: ${(err as Error).message}`);
    }
    const path = clean(str(args, 'path', true));
    const glob = str(args, 'glob', true);
    const globRe = glob ? globToRegExp(glob) : null;
    const matches: string[] = [];
    const searchFile = (file: string) => {
      if (matches.length >= MAX_MATCHES) return;
      if (globRe && !globRe.test(glob!.includes('/') ? file : file.slice(file.lastIndexOf('/') + 1))) return;
      const bytes = readBytes(file);
      if (bytes.length > MAX_FILE_BYTES || looksBinary(bytes)) return;
      const lines = decodeUtf8(bytes).split('\n');
      for (let i = 0; i < lines.length && matches.length < MAX_MATCHES; i++) {
        if (regex.test(lines[i]!)) matches.push(`${file}:${i + 1}:${lines[i]}`);
      }
    };
    const type = typeOf(path);
    if (type === null) throw failed(`${path}: no such file or directory`);
    if (type === 'directory') walkFiles(path, MAX_FILES, searchFile);
    else searchFile(path);
    if (matches.length === 0) return 'no matches';
    return matches.join('\n') + (matches.length >= MAX_MATCHES ? `\n… (stopped after ${MAX_MATCHES} matches)` : '');
  },
};
