// read-file {path, offset?, limit?}: lines of a text file, numbered; offset and limit in lines, 1-based.
import { clean, failed, readBytes } from '../lib/fs.js';
import { int, parseInput, str } from '../lib/input.js';
import { decodeUtf8, looksBinary } from '../lib/text.js';

const MAX_LINES = 2000;

export const tool = {
  describe() {
    return {
      name: 'read-file',
      description: `Read a text file of the workspace. Returns numbered lines ("N\\ttext"); at most ${MAX_LINES} lines per call, use offset/limit for more.`,
      inputSchema: JSON.stringify({
        type: 'object',
        properties: {
          path: { type: 'string', description: 'Path relative to the workspace root' },
          offset: { type: 'integer', minimum: 1, description: 'First line to return (1-based)' },
          limit: { type: 'integer', minimum: 1, description: 'Number of lines to return' },
        },
        required: ['path'],
        additionalProperties: false,
      }),
    };
  },
  call(input: string): string {
    const args = parseInput(input);
    const path = clean(str(args, 'path'));
    const offset = int(args, 'offset') ?? 1;
    const limit = Math.min(int(args, 'limit') ?? MAX_LINES, MAX_LINES);
    const bytes = readBytes(path);
    if (looksBinary(bytes)) throw failed(`${path}: binary file (${bytes.length} bytes)`);
    const lines = decodeUtf8(bytes).split('\n');
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    const slice = lines.slice(offset - 1, offset - 1 + limit);
    const body = slice.map((line, i) => `${offset + i}\t${line}`).join('\n');
    const end = offset - 1 + slice.length;
    return end < lines.length ? `${body}\n… (${lines.length - end} more lines; continue with offset ${end + 1})` : body;
  },
};
