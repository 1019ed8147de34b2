// write-file {path, content}: create or replace a file (and its parent directories).
import { clean, invalid, writeText } from '../lib/fs.js';
import { parseInput, str } from '../lib/input.js';

export const tool = {
  describe() {
    return {
      name: 'write-file',
      description: 'Create or replace a file of the workspace with the given content. Parent directories are created.',
      inputSchema: JSON.stringify({
        type: 'object',
        properties: {
          path: { type: 'string', description: 'Path relative to the workspace root' },
          content: { type: 'string', description: 'The complete new content' },
        },
        required: ['path', 'content'],
        additionalProperties: false,
      }),
    };
  },
  call(input: string): string {
    const args = parseInput(input);
    const path = clean(str(args, 'path'));
    if (path === '') throw invalid('path must name a file');
    const bytes = writeText(path, str(args, 'content'));
    return `wrote ${bytes} bytes to ${path}`;
  },
};
