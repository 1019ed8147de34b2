import { startScriptedServer } from '/work/main/test/support/scripted-openai.ts';
const s = await startScriptedServer([
  { toolCalls: [{ name: 'list-files', arguments: { recursive: true } }] },
  { toolCalls: [{ name: 'grep', arguments: { pattern: '\\bparseOptions\\b', glob: '**/*.js' } }] },
  { toolCalls: [{ name: 'read-file', arguments: { path: 'lib/command.js', offset: 1, limit: 20 } }] },
  { toolCalls: [{ name: 'edit-file', arguments: { path: 'lib/command.js', old_string: 'parseOptions(', new_string: 'parseOptionArguments(', replace_all: true } }] },
  { content: 'Renamed parseOptions to parseOptionArguments in lib/command.js.' },
]);
console.log(s.baseURL);
process.stdin.resume();
