// Replay: a task recorded with a scripted model runs again from its transcript through
// `warden run --replay`, with the model server stopped, in a fresh kernel, making the same tool
// calls and arriving at the same summary and session diff.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Kernel } from '../../kernel/kernel.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { replayTask } from '../../kernel/cli/replay.js';
import { readTranscript, transcriptPath } from '../../kernel/transcript/index.js';
import type { TaskState } from '../../kernel/state/index.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { realRepository, tempDir, kernelDataDir } from '../support/fixtures.js';

const run = promisify(execFile);

let server: ScriptedServer;
let original: TaskState;
let recorded: string;
const repo = realRepository();
const before = readFileSync(join(repo, 'lib/command.js'), 'utf8');

/** A data directory whose config lets the agent edit without asking and names `baseURL` as the model. */
function dataDir(baseURL: string): string {
  const dir = kernelDataDir('replay');
  writeFileSync(join(dir, 'warden.config.json'), JSON.stringify({
    backends: [{ name: 'default', baseURL, apiKeyEnv: 'OPENAI_API_KEY' }],
    policy: { mode: 'acceptEdits' },
  }));
  return dir;
}

/** The calls the coder made, in order: target and input. */
function callsOf(file: string): Array<[string, string]> {
  return readTranscript(file).events.flatMap((e) => (e.type === 'tool.call' && e.caller === 'coder' ? [[e.target, e.input] as [string, string]] : []));
}

beforeAll(async () => {
  server = await startScriptedServer([
    { toolCalls: [{ name: 'grep', arguments: { pattern: '_parseOptionsEnv', glob: '**/*.js' } }, { name: 'read-file', arguments: { path: 'lib/nope.js' } }] },
    { toolCalls: [{ name: 'edit-file', arguments: { path: 'lib/command.js', old_string: '_parseOptionsEnv', new_string: '_parseOptionsFromEnv', replace_all: true } }] },
    { toolCalls: [{ name: 'write-file', arguments: { path: 'NOTES.md', content: 'renamed _parseOptionsEnv\n' } }] },
    { content: 'Renamed _parseOptionsEnv to _parseOptionsFromEnv and wrote NOTES.md.' },
  ]);
  const dir = dataDir(server.baseURL);
  const kernel = await Kernel.start({ dataDir: dir, quiet: true });
  try {
    const id = kernel.submitTask({ prompt: 'Rename _parseOptionsEnv to _parseOptionsFromEnv', workspace: repo, model: 'scripted' });
    original = await kernel.waitForTask(id);
  } finally {
    await kernel.close();
    // From here on no model answers anywhere.
    await server.close();
  }
  expect(original.error).toBeUndefined();
  expect(original.status).toBe('succeeded');
  recorded = transcriptPath(dir, original.id);
});

afterAll(async () => {
  await server?.close();
});

describe('a recorded task replayed from its transcript', () => {
  it('`warden run --replay TRANSCRIPT` makes the same tool calls and ends with the same summary and session diff, with no model server', async () => {
    expect(callsOf(recorded)).toHaveLength(4);
    expect(replayTask(recorded)).toEqual({ transcript: recorded, prompt: original.prompt, workspace: repo, model: 'scripted' });
    // The replaying kernel's config still names the stopped server: only the replay backend is used.
    const dir = dataDir(server.baseURL);
    const { stdout } = await run(process.execPath, [join(PACKAGE_ROOT, 'bin/warden.js'), 'run', '--replay', recorded, '--json', '--data-dir', dir]);
    const replayed = JSON.parse(stdout) as TaskState & { committed: boolean };
    expect(replayed.error).toBeUndefined();
    expect(replayed.status).toBe('succeeded');
    expect(replayed.committed).toBe(false);
    expect(replayed.id).not.toBe(original.id);
    expect(callsOf(transcriptPath(dir, replayed.id))).toEqual(callsOf(recorded));
    expect(replayed.summary).toBe(original.summary);
    expect(replayed.diff).toEqual(original.diff);
    expect(replayed.diff!.map((c) => `${c.kind} ${c.path}`)).toEqual(['added NOTES.md', 'modified lib/command.js']);
    // Served by the replay backend, as the replay's own transcript records.
    const served = readTranscript(transcriptPath(dir, replayed.id)).events.filter((e) => e.type === 'inference.response');
    expect(served.map((e) => (e as { backend: string }).backend)).toEqual(['replay', 'replay', 'replay', 'replay']);
    // Neither run touched the workspace (their sessions were not committed).
    expect(readFileSync(join(repo, 'lib/command.js'), 'utf8')).toBe(before);
  });

  it('--workspace replays it on another directory', () => {
    const elsewhere = tempDir('elsewhere');
    expect(replayTask(recorded, elsewhere).workspace).toBe(elsewhere);
  });

  it('refuses a file that records no task or no model answer', () => {
    const file = join(tempDir('empty'), 't-0000cafe.jsonl');
    writeFileSync(file, '{"type":"transcript","version":1,"taskId":"t-0000cafe","ts":1}\n{"type":"task.start","taskId":"t-0000cafe","ts":2,"prompt":"p","workspace":"/","model":"m","resumed":false}\n');
    expect(() => replayTask(file)).toThrow(`${file} records no model response (inference.response): nothing to replay`);
    writeFileSync(file, '{"type":"transcript","version":1,"taskId":"t-0000cafe","ts":1}\n');
    expect(() => replayTask(file)).toThrow(`${file} records no task.start: nothing to replay`);
  });
});
