// `warden run` as a user runs it: a child process against a scripted server and a real repository.
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { realRepository, tempDir } from '../support/fixtures.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');
let server: ScriptedServer | undefined;
afterAll(async () => server?.close());

function cli(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [warden, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

describe('warden run', () => {
  it('edits a real repository, prints the diff summary, and commits with --commit', async () => {
    server = await startScriptedServer([
      { toolCalls: [{ name: 'grep', arguments: { pattern: 'class Option\\b' } }] },
      { toolCalls: [{ name: 'edit-file', arguments: { path: 'lib/option.js', old_string: 'class Option {', new_string: 'class Option { // a command-line option' } }] },
      { content: 'Documented Option.' },
    ]);
    const repo = realRepository();
    const data = tempDir('data');
    // --mode acceptEdits: the edit goes on without asking (mode default would wait for an approval).
    const result = await cli(['run', '--workspace', repo, '--model', 'scripted', '--mode', 'acceptEdits', '--data-dir', data, '--commit', 'Document the Option class'], {
      OPENAI_BASE_URL: server.baseURL,
    });
    expect(result.stderr).toContain('✓ grep');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('M lib/option.js  (+1 -1)');
    expect(result.stdout).toContain('committed session');
    expect(readFileSync(join(repo, 'lib/option.js'), 'utf8')).toContain('class Option { // a command-line option');
  });

  it('leaves the session open without --commit; session commands finish it', async () => {
    server = await startScriptedServer([
      { toolCalls: [{ name: 'write-file', arguments: { path: 'NEW.md', content: 'new\n' } }] },
      { content: 'Wrote NEW.md.' },
    ]);
    const repo = realRepository();
    const data = tempDir('data');
    const result = await cli(['run', '--workspace', repo, '--model', 'scripted', '--mode', 'acceptEdits', '--data-dir', data, '--json', 'Add NEW.md'], { OPENAI_BASE_URL: server.baseURL });
    expect(result.code).toBe(0);
    const task = JSON.parse(result.stdout) as { sessionId: string; committed: boolean };
    expect(task.committed).toBe(false);
    const list = await cli(['session', 'list', '--data-dir', data]);
    expect(list.stdout).toContain(task.sessionId);
    const discard = await cli(['session', 'discard', task.sessionId, '--data-dir', data]);
    expect(discard.code).toBe(0);
    expect(() => readFileSync(join(repo, 'NEW.md'))).toThrow();
    const again = await cli(['session', 'commit', task.sessionId, '--data-dir', data]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^warden: no open session/);
  });

  it('prints one clear line naming the URL and the variables when no model endpoint answers', async () => {
    const result = await cli(['run', '--workspace', realRepository(), '--data-dir', tempDir('data'), 'anything'], {
      OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
    });
    expect(result.code).toBe(1);
    const last = result.stderr.trim().split('\n').at(-1)!;
    expect(last).toMatch(/^warden: task .* cannot reach the model endpoint http:\/\/127\.0\.0\.1:9\/v1 .* OPENAI_BASE_URL/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
