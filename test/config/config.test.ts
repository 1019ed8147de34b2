// The configuration file: validation errors name the file and the field (unknown keys, wrong types,
// nested fields, JSON and TOML syntax with line and column), secrets are refused as literals and
// masked everywhere they are shown (`warden config check` as a child process, `GET /api/config`
// on a real kernel and port), and references to unset variables are warned about by name.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { readConfig, configFile, type ConfigIssue } from '../../kernel/config/index.js';
import { isWardenError, type WardenError } from '../../kernel/errors.js';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { authed } from '../support/auth.js';
import { tempDir } from '../support/fixtures.js';

const run = promisify(execFile);
const warden = join(PACKAGE_ROOT, 'bin/warden.js');

/** A secret value as it would sit in the environment; it must never be printed or served. */
const SECRET = 'secret-value-9f3c2a71';
/** A credential-shaped literal an operator might paste into the file by mistake. */
const PASTED_TOKEN = 'ghp_Zx81Qm2LpR7vT4nK9wYc3Hd6Fj0Ab5Es1GuI';

function cli(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [warden, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** Write `content` as `name` in a fresh directory; returns the file's path. */
function configIn(content: unknown, name = 'warden.config.json'): string {
  const file = join(tempDir('config'), name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}

/** The E_CONFIG error reading `file` raises (fails the test when there is none). */
function configErrorOf(file: string, env: NodeJS.ProcessEnv = {}): WardenError & { issues: ConfigIssue[] } {
  try {
    readConfig(file, env);
  } catch (err) {
    if (!isWardenError(err, 'E_CONFIG')) throw err;
    return Object.assign(err, { issues: err.detail!['issues'] as ConfigIssue[] });
  }
  throw new Error(`${file} was accepted`);
}

describe('validation names the file and the field', () => {
  it('an unknown top-level key is named with the known ones', () => {
    const file = configIn({ maxTurns: 3, serve: { auth: false } });
    const err = configErrorOf(file);
    expect(err.issues).toEqual([{ path: 'serve', message: expect.stringMatching(/^unknown field \(known: .*\bserver\b.*\)$/) }]);
    expect(err.message).toBe(`${file}: serve: ${err.issues[0]!.message}`);
  });

  it('an unknown nested key is named at its own path', () => {
    const err = configErrorOf(configIn({ grants: { grep: { filesytem: 'session:ro' } } }));
    expect(err.issues).toEqual([{ path: 'grants.grep.filesytem', message: expect.stringContaining('known: filesystem,') }]);
  });

  it('wrong types and bad values name every nested path at once', () => {
    const err = configErrorOf(
      configIn({ maxTurns: '30', pools: { grep: { min: 0 } }, grants: { grep: { filesystem: 'rw' } }, server: { rateLimit: { max: -1 }, bodyLimitBytes: 'big' } }),
    );
    const paths = err.issues.map((i) => i.path).sort();
    expect(paths).toEqual(['grants.grep.filesystem', 'maxTurns', 'pools.grep.min', 'server.bodyLimitBytes', 'server.rateLimit.max']);
    expect(err.issues.find((i) => i.path === 'maxTurns')!.message).toMatch(/expected number, received string/);
    for (const issue of err.issues) expect(err.message).toContain(`: ${issue.path}: ${issue.message}`);
  });

  it('a server field outside its range is refused with its path', () => {
    const err = configErrorOf(configIn({ server: { streamsPerKey: 0, unknown: 1 } }));
    expect(err.issues.map((i) => i.path).sort()).toEqual(['server.streamsPerKey', 'server.unknown']);
  });

  it('a JSON syntax error gives the line and column, and does not quote the file', () => {
    const text = `{\n  "backends": [{ "name": "a", "baseURL": "http://127.0.0.1:1/v1", "apiKeyEnv": "${PASTED_TOKEN}" }],\n  "maxTurns": 3,,\n}\n`;
    const file = configIn(text);
    const err = configErrorOf(file);
    expect(err.issues).toEqual([{ path: '', line: 3, column: 17, message: expect.stringMatching(/^not valid JSON: expected a double-quoted property name/) }]);
    expect(err.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:17: not valid JSON`));
    expect(err.message).not.toContain(PASTED_TOKEN);
    // An unterminated string at the end of the file, and trailing text after the value.
    expect(configErrorOf(configIn('{"maxTurns": "3')).issues[0]).toMatchObject({ line: 1, column: 16, message: expect.stringContaining('unterminated string') });
    expect(configErrorOf(configIn('{}\n\n  x')).issues[0]).toMatchObject({ line: 3, column: 3, message: expect.stringContaining('after the end') });
  });

  it('a valid file gives defaults for every server field', () => {
    const { config, warnings } = readConfig(configIn({ server: { rateLimit: { max: 5 } } }), {});
    expect(config.server).toEqual({
      auth: true, rateLimit: { max: 5, timeWindowMs: 60_000 }, bodyLimitBytes: 1_048_576, wsMaxPayloadBytes: 65_536,
      streamsPerKey: 16, tasksPerKey: 8, shutdownGraceMs: 10_000, loginTtlMs: 604_800_000, authFailuresPerMinute: 50,
      streamBufferBytes: 1_048_576, pingIntervalMs: 15_000, retainedEnvelopes: 10_000,
    });
    expect(warnings).toEqual([]);
  });

  it("the README's complete example is valid, sets every top-level section, and differs from the defaults only where it says", () => {
    const readme = readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'));
    const example = /```json\n(\{[\s\S]*?\n\})\n```/.exec(section)![1]!;
    const parsed = JSON.parse(example) as Record<string, unknown>;
    const env = { OPENAI_API_KEY: 'k', BACKUP_API_KEY: 'k', OLLAMA_API_KEY: 'k', GITHUB_TOKEN: 'k' };
    const { config, warnings } = readConfig(configIn(example), env);
    expect(warnings).toEqual([]);
    const defaults = readConfig(configIn({}), {}).config as unknown as Record<string, unknown>;
    expect(Object.keys(parsed).sort()).toEqual(Object.keys(defaults).sort());
    expect(config.backends.map((b) => b.name)).toEqual(['openai', 'backup', 'local']);
    expect(config.policy.agents['coder']?.mode).toBe('acceptEdits');
    expect(config.inference.categories['coding']).toBe('gpt-4o@openai');
  });
});

describe('secrets only by environment reference', () => {
  it('a literal value for a secret-named variable is refused, naming the field and the fix, never the value', () => {
    const err = configErrorOf(configIn({ grants: { fetcher: { env: { GITHUB_TOKEN: 'plain-but-named-like-a-secret' } } } }));
    expect(err.issues).toEqual([{ path: 'grants.fetcher.env.GITHUB_TOKEN', message: expect.stringContaining('put it in the environment and write "$GITHUB_TOKEN"') }]);
    expect(err.message).not.toContain('plain-but-named-like-a-secret');
  });

  it('a credential-looking literal is refused under any name; ordinary literals and references are accepted', () => {
    const pem = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----';
    const entropic = 'q8Vn2XrT5mKp0LwZ3bYc7HdJ4fGs9AeU'; // 32 random characters
    for (const value of [PASTED_TOKEN, 'sk-proj-abcdefghijklmnop', pem, entropic]) {
      const err = configErrorOf(configIn({ grants: { t: { env: { SETTING: value } } } }));
      expect(err.issues.map((i) => i.path)).toEqual(['grants.t.env.SETTING']);
      expect(err.message).not.toContain(value.slice(0, 12));
    }
    const { config } = readConfig(configIn({ grants: { t: { env: { LANG: 'C.UTF-8', HOME: '/home/agent/workspace/project-directory', TOKEN: '$MY_TOKEN' } } } }), { MY_TOKEN: SECRET });
    expect(config.grants['t']!.env).toEqual({ LANG: 'C.UTF-8', HOME: '/home/agent/workspace/project-directory', TOKEN: '$MY_TOKEN' });
  });

  it('a malformed reference, a key in a backend URL, or a key in apiKeyEnv is refused', () => {
    const err = configErrorOf(
      configIn({
        grants: { t: { env: { A: '$1NOPE' } } },
        backends: [
          { name: 'a', baseURL: 'https://user:hunter2@api.example.com/v1', apiKeyEnv: 'A_KEY' },
          { name: 'b', baseURL: 'https://api.example.com/v1?api_key=abc', apiKeyEnv: 'sk-live-abcdef' },
        ],
      }),
    );
    expect(err.issues.map((i) => i.path).sort()).toEqual(['backends.0.baseURL', 'backends.1.apiKeyEnv', 'backends.1.baseURL', 'grants.t.env.A']);
    expect(err.message).not.toContain('hunter2');
    expect(err.message).not.toContain('sk-live-abcdef');
  });

  it('references to unset variables are warnings naming the variable', () => {
    const file = configIn({
      backends: [{ name: 'remote', baseURL: 'https://api.example.com/v1', apiKeyEnv: 'REMOTE_KEY' }],
      grants: { t: { env: { A: '$SET_VAR', B: '$UNSET_VAR' } } },
    });
    const { warnings } = readConfig(file, { SET_VAR: SECRET });
    expect(warnings).toEqual([
      { path: 'backends.0.apiKeyEnv', message: expect.stringContaining('REMOTE_KEY is not set') },
      { path: 'grants.t.env.B', message: expect.stringContaining('UNSET_VAR is not set') },
    ]);
    expect(JSON.stringify(warnings)).not.toContain(SECRET);
  });
});

describe('TOML', () => {
  const toml = `maxTurns = 7

[server]
tasksPerKey = 2
rateLimit = { max = 50, timeWindowMs = 10000 }

[grants.fetcher]
filesystem = "session:ro"
env = { GITHUB_TOKEN = "$GITHUB_TOKEN" }

[[backends]]
name = "local"
baseURL = "http://127.0.0.1:11434/v1"
apiKeyEnv = "OPENAI_API_KEY"
`;

  it('parses to the same configuration as the equivalent JSON', () => {
    const json = {
      maxTurns: 7,
      server: { tasksPerKey: 2, rateLimit: { max: 50, timeWindowMs: 10_000 } },
      grants: { fetcher: { filesystem: 'session:ro', env: { GITHUB_TOKEN: '$GITHUB_TOKEN' } } },
      backends: [{ name: 'local', baseURL: 'http://127.0.0.1:11434/v1', apiKeyEnv: 'OPENAI_API_KEY' }],
    };
    const env = { GITHUB_TOKEN: SECRET, OPENAI_API_KEY: 'x' };
    expect(JSON.parse(JSON.stringify(readConfig(configIn(toml, 'warden.config.toml'), env).config))).toEqual(readConfig(configIn(json), env).config);
  });

  it('errors name the field, syntax errors the line and column', () => {
    const bad = configErrorOf(configIn(toml.replace('tasksPerKey = 2', 'tasksPerKey = "two"').replace('"$GITHUB_TOKEN"', `"${PASTED_TOKEN}"`), 'warden.config.toml'));
    expect(bad.issues.map((i) => i.path).sort()).toEqual(['grants.fetcher.env.GITHUB_TOKEN', 'server.tasksPerKey']);
    expect(bad.message).not.toContain(PASTED_TOKEN);
    const syntax = configErrorOf(configIn(`maxTurns = 3\n[server]\nauth = yes # ${PASTED_TOKEN}\n`, 'warden.config.toml'));
    expect(syntax.issues).toEqual([{ path: '', line: 3, column: 8, message: expect.stringMatching(/^not valid TOML: /) }]);
    expect(syntax.message).not.toContain(PASTED_TOKEN);
  });

  it('a data directory with both files is refused, naming both', () => {
    const dir = tempDir('both');
    writeFileSync(join(dir, 'warden.config.json'), '{}');
    writeFileSync(join(dir, 'warden.config.toml'), '');
    expect(() => configFile(dir)).toThrow(/warden\.config\.json and .*warden\.config\.toml.*keep one/);
  });
});

describe('warden config check', () => {
  const valid = { grants: { fetcher: { filesystem: 'session:ro', env: { GITHUB_TOKEN: '$GITHUB_TOKEN', LANG: 'C.UTF-8', NOT_SET: '$WARDEN_TEST_UNSET' } } } };

  it('prints ok and the warnings for a valid file, exit 0, and never the value of a reference', async () => {
    const file = configIn(valid);
    const r = await cli(['config', 'check', file, '--print'], { GITHUB_TOKEN: SECRET });
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(`ok: ${file}`);
    expect(lines[1]).toBe(`warning: ${file}: grants.fetcher.env.NOT_SET: WARDEN_TEST_UNSET is not set; fetcher sees NOT_SET empty`);
    expect(r.stdout).toContain('"GITHUB_TOKEN": "$GITHUB_TOKEN"');
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('--json gives {ok, file, errors, warnings, effective} with defaults applied and secrets masked', async () => {
    const file = configIn(valid);
    const r = await cli(['config', 'check', file, '--json'], { GITHUB_TOKEN: SECRET });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(SECRET);
    const report = JSON.parse(r.stdout) as { ok: boolean; file: string; errors: unknown[]; warnings: ConfigIssue[]; effective: any };
    expect(Object.keys(report).sort()).toEqual(['effective', 'errors', 'file', 'ok', 'warnings']);
    expect(report).toMatchObject({ ok: true, file, errors: [], warnings: [{ path: 'grants.fetcher.env.NOT_SET' }] });
    expect(report.effective.grants.fetcher.env).toEqual({ GITHUB_TOKEN: '$GITHUB_TOKEN', LANG: '***', NOT_SET: '$WARDEN_TEST_UNSET' });
    expect(report.effective.server.rateLimit).toEqual({ max: 600, timeWindowMs: 60_000 });
    expect(report.effective.backends).toEqual([{ name: 'default', baseURL: expect.any(String), apiKeyEnv: 'OPENAI_API_KEY' }]);
  });

  it('an invalid file prints one line per error and exits 1; --json lists them', async () => {
    const file = configIn({ maxTurns: 0, pools: { grep: { spare: 1 } }, grants: { x: { env: { API_KEY: 'literal' } } } });
    const r = await cli(['config', 'check', file]);
    expect(r.code).toBe(1);
    expect(r.stdout.trim().split('\n').sort()).toEqual([
      `${file}: grants.x.env.API_KEY: a secret may not be written in the config file; put it in the environment and write "$API_KEY"`,
      `${file}: maxTurns: Too small: expected number to be >=1`,
      `${file}: pools.grep.spare: unknown field (known: min, max, queue, idleMs, spares)`,
    ]);
    const json = await cli(['config', 'check', file, '--json']);
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout) as { ok: boolean; errors: ConfigIssue[]; effective: unknown };
    expect(report.ok).toBe(false);
    expect(report.effective).toBeNull();
    expect(report.errors.map((e) => e.path).sort()).toEqual(['grants.x.env.API_KEY', 'maxTurns', 'pools.grep.spare']);
  });

  it('without FILE checks the data directory\'s file (JSON or TOML), refuses both, accepts none', async () => {
    const dir = tempDir('data');
    expect((await cli(['config', 'check', '--data-dir', dir])).stdout).toMatch(/^ok: .*\(no config file: defaults\)/);
    writeFileSync(join(dir, 'warden.config.toml'), '[server]\nstreamsPerKey = "many"\n');
    const toml = await cli(['config', 'check', '--data-dir', dir]);
    expect(toml.code).toBe(1);
    expect(toml.stdout.trim()).toBe(`${join(dir, 'warden.config.toml')}: server.streamsPerKey: Invalid input: expected number, received string`);
    writeFileSync(join(dir, 'warden.config.json'), '{}');
    // The whole result, so that a failure shows stderr too.
    expect(await cli(['config', 'check', '--data-dir', dir])).toMatchObject({ code: 1, stderr: '', stdout: expect.stringContaining('both warden.config.json and warden.config.toml exist; keep one') });
    const syntax = await cli(['config', 'check', configIn('{"maxTurns": 3\n  "x": 1}')]);
    expect(syntax.code).toBe(1);
    expect(syntax.stdout).toMatch(/warden\.config\.json:2:3: not valid JSON: expected ',' or '}'/);
  });
});

describe('GET /api/config on a running kernel', () => {
  let kernel: Kernel;
  let app: FastifyInstance;
  let base: string;
  const logged: string[] = [];

  beforeAll(async () => {
    const dataDir = tempDir('data');
    writeFileSync(
      join(dataDir, 'warden.config.toml'),
      `[grants.fetcher]\nfilesystem = "session:ro"\nenv = { GITHUB_TOKEN = "$GITHUB_TOKEN", LANG = "C.UTF-8", MISSING = "$WARDEN_TEST_MISSING" }\n[server]\ntasksPerKey = 3\n`,
    );
    const sink = new Writable({ write: (chunk, _enc, done) => (logged.push(String(chunk)), done()) });
    kernel = await Kernel.start({ dataDir, quiet: true, logger: pino({ level: 'info' }, sink), env: { ...process.env, GITHUB_TOKEN: SECRET } });
    app = await buildServer(kernel);
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    await app?.close();
    await kernel?.close();
  });

  it('serves the effective config with env values as references, never their values', async () => {
    const { headers } = authed(kernel);
    const res = await fetch(`${base}/api/config`, { headers });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(SECRET);
    const config = JSON.parse(text) as any;
    expect(config.grants.fetcher).toEqual({ filesystem: 'session:ro', env: { GITHUB_TOKEN: '$GITHUB_TOKEN', LANG: '***', MISSING: '$WARDEN_TEST_MISSING' } });
    expect(config.server.tasksPerKey).toBe(3);
    expect(config.maxTurns).toBe(30);
    // The kernel does resolve the reference for the component: masking is display only.
    expect(kernel.effectiveFor({ name: 'fetcher', version: '1', kind: 'tool', description: '', requests: { filesystem: 'session:ro', sql: null, mesh: [], inference: [], session: false, env: ['GITHUB_TOKEN'], http: [], sockets: [] }, limits: {}, subscribe: [] }, false).grants.env['GITHUB_TOKEN']).toBe(SECRET);
  });

  it('needs a key like every route but /health', async () => {
    expect((await fetch(`${base}/api/config`)).status).toBe(401);
  });

  it('warned at start about the unset reference by name, and logged no secret', () => {
    const warning = logged.map((l) => JSON.parse(l) as { level: number; msg: string; field?: string }).find((l) => l.field === 'grants.fetcher.env.MISSING');
    expect(warning).toMatchObject({ level: 40, msg: 'config: WARDEN_TEST_MISSING is not set; fetcher sees MISSING empty' });
    expect(logged.join('')).not.toContain(SECRET);
  });
});
