// list-files {path?, recursive?}: entries of a directory; directories end with '/'.
import { clean, failed, listDir, typeOf, walkFiles } from '../lib/fs.js';
import { bool, parseInput, str } from '../lib/input.js';

const MAX_ENTRIES = 2000;

export const tool = {
  describe() {
    return {
      name: 'list-files',
      description: `List a directory of the workspace (default: the root). With recursive, every file below it (skipping .git and node_modules), at most ${MAX_ENTRIES}.`,
      inputSchema: JSON.stringify({
        type: 'object',
        properties: {
          path: { type: 'string', description: 'Directory relative to the workspace root' },
          recursive: { type: 'boolean', description: 'List every file below the directory' },
        },
        additionalProperties: false,
      }),
    };
  },
  call(input: string): string {
    const args = parseInput(input);
    const path = clean(str(args, 'path', true));
    if (typeOf(path) !== 'directory') throw failed(`${path || '.'}: not a directory`);
    if (bool(args, 'recursive')) {
      const files: string[] = [];
      const complete = walkFiles(path, MAX_ENTRIES, (f) => files.push(f));
      return files.join('\n') + (complete ? '' : `\n… (stopped after ${MAX_ENTRIES} files)`);
    }
    return listDir(path)
      .map((e) => (e.type === 'directory' ? `${e.name}/` : e.name))
      .join('\n');
  },
};
