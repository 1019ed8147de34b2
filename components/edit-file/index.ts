// edit-file {path, old_string, new_string, replace_all?}: exact string replacement in a file.
import { clean, failed, invalid, readText, writeText } from '../lib/fs.js';
import { bool, parseInput, str } from '../lib/input.js';

function count(haystack: string, needle: string): number {
  let n = 0;
  for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + needle.length)) n++;
  return n;
}

export const tool = {
  describe() {
    return {
      name: 'edit-file',
      description:
        'Replace old_string with new_string in a file of the workspace. old_string must occur exactly once, unless replace_all is true.',
      inputSchema: JSON.stringify({
        type: 'object',
        properties: {
          path: { type: 'string', description: 'Path relative to the workspace root' },
          old_string: { type: 'string', description: 'Exact text to replace' },
          new_string: { type: 'string', description: 'Replacement text' },
          replace_all: { type: 'boolean', description: 'Replace every occurrence' },
        },
        required: ['path', 'old_string', 'new_string'],
        additionalProperties: false,
      }),
    };
  },
  call(input: string): string {
    const args = parseInput(input);
    const path = clean(str(args, 'path'));
    const oldString = str(args, 'old_string');
    const newString = str(args, 'new_string');
    const all = bool(args, 'replace_all');
    if (oldString === '') throw invalid('old_string must not be empty');
    if (oldString === newString) throw invalid('old_string and new_string are the same');
    const text = readText(path);
    const n = count(text, oldString);
    if (n === 0) throw failed(`${path}: old_string not found`);
    if (n > 1 && !all) throw failed(`${path}: old_string occurs ${n} times; add context to make it unique or set replace_all`);
    const updated = all ? text.split(oldString).join(newString) : text.replace(oldString, () => newString);
    writeText(path, updated);
    return `replaced ${all ? n : 1} occurrence(s) in ${path}`;
  },
};
