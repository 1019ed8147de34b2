// The policy engine on its own: rule syntax and globs, the order deny → ask → allow → mode,
// modes and read/write classification, per-agent overrides, modes along a call chain, and the
// config's validation of patterns.
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { globToRegExp, parseRule, Policy, policySchema, policySpecFor, primaryArgument, type PolicyAction, type PolicyRules, type PolicySpec } from '../../kernel/policy/index.js';
import { readConfig } from '../../kernel/config/index.js';
import { isWardenError } from '../../kernel/errors.js';
import { tempDir } from '../support/fixtures.js';

const rules = (r: Partial<PolicyRules>): PolicyRules => ({ deny: [], ask: [], allow: [], ...r });
const spec = (r: Partial<PolicyRules>, mode: PolicySpec['mode'] = 'default', caps = true): PolicySpec => ({ mode, rules: rules(r), caps, approvalTimeoutMs: 600_000 });
const tool = (name: string, input: unknown, write: 'fs' | 'http' | false = false): PolicyAction => ({ kind: 'tool', name, input: JSON.stringify(input), write });

describe('globs', () => {
  it.each([
    ['src/**', 'src/a/b.ts', true],
    ['src/**', 'src', true],
    ['src/**', 'srcs/a.ts', false],
    ['src/**', 'lib/src/a.ts', false],
    ['src/*', 'src/a.ts', true],
    ['src/*', 'src/a/b.ts', false],
    ['**/*.ts', 'a.ts', true],
    ['**/*.ts', 'x/y/a.ts', true],
    ['**/*.ts', 'x/y/a.js', false],
    ['.git/**', '.git/config', true],
    ['.git/**', '.github/workflows/ci.yml', false],
    ['a?c', 'abc', true],
    ['a?c', 'a/c', false],
    ['a.c', 'abc', false],
    ['*.example.com', 'api.example.com', true],
    ['*.example.com', 'example.com', false],
  ])('%s against %s: %s', (glob, value, expected) => {
    expect(globToRegExp(glob).test(value)).toBe(expected);
  });

  it('takes the tool\'s primary argument from its input, normalising paths', () => {
    expect(primaryArgument('{"path":"./src/../.git/config","content":"x"}')).toBe('.git/config');
    expect(primaryArgument('{"file":"/src/a.ts"}')).toBe('src/a.ts');
    expect(primaryArgument('{"filePath":"a//b.ts"}')).toBe('a/b.ts');
    expect(primaryArgument('{"pattern":"TODO","glob":"**/*.ts"}')).toBe('TODO');
    expect(primaryArgument('{"url":"https://x.test/"}')).toBe('https://x.test/');
    expect(primaryArgument('{"command":"ls"}')).toBe('ls');
    expect(primaryArgument('{"path":1,"pattern":"p"}')).toBe('p');
    expect(primaryArgument('not json')).toBeUndefined();
    expect(primaryArgument('[1]')).toBeUndefined();
  });

  it.each([
    ['write-file(', /unbalanced parentheses/],
    ['write-file()', /glob is empty/],
    ['Write-File', /not a tool name/],
    ['mesh:', /mesh:NAME-GLOB needs/],
    ['mesh:Agent', /mesh:NAME-GLOB needs/],
    [' grep', /padded with spaces/],
    ['grep(a(b))', /holds parentheses|unbalanced/],
  ])('refuses the rule %j', (text, message) => {
    expect(() => parseRule(text)).toThrow(message);
  });
});

describe('rule order: deny → ask → allow → mode, first match', () => {
  it('write-file(src/**) matches src/a/b.ts and not .git/config; a bare tool name matches any argument', () => {
    const p = new Policy(spec({ ask: ['write-file(src/**)'], allow: ['grep'] }, 'bypassPermissions'));
    expect(p.decide(tool('write-file', { path: 'src/a/b.ts' }, 'fs'), 'bypassPermissions')).toMatchObject({ decision: 'ask', rule: 'ask: write-file(src/**)', subject: 'write-file(src/a/b.ts)' });
    expect(p.decide(tool('write-file', { path: '.git/config' }, 'fs'), 'bypassPermissions')).toMatchObject({ decision: 'allow', rule: 'mode bypassPermissions' });
    expect(p.decide(tool('grep', { pattern: 'x' }), 'default')).toMatchObject({ decision: 'allow', rule: 'allow: grep', subject: 'grep(x)' });
    expect(p.decide(tool('grep', {}), 'default')).toMatchObject({ decision: 'allow', rule: 'allow: grep', subject: 'grep' });
  });

  it('deny beats ask beats allow, whatever the order they are written in, and the mode never overrides a rule', () => {
    const p = new Policy(spec({ allow: ['write-file'], ask: ['write-file(src/**)'], deny: ['write-file(src/secret/**)'] }));
    expect(p.decide(tool('write-file', { path: 'src/secret/k' }, 'fs'), 'bypassPermissions')).toMatchObject({ decision: 'deny', rule: 'deny: write-file(src/secret/**)' });
    expect(p.decide(tool('write-file', { path: 'src/a.ts' }, 'fs'), 'bypassPermissions')).toMatchObject({ decision: 'ask', rule: 'ask: write-file(src/**)' });
    expect(p.decide(tool('write-file', { path: 'README.md' }, 'fs'), 'default')).toMatchObject({ decision: 'allow', rule: 'allow: write-file' });
  });

  it('within a list the first matching rule is the one reported', () => {
    const p = new Policy(spec({ deny: ['write-file(.git/**)', 'write-file', '*-file(.git/config)'] }));
    expect(p.decide(tool('write-file', { path: '.git/config' }, 'fs'), 'default').rule).toBe('deny: write-file(.git/**)');
    expect(p.decide(tool('edit-file', { path: '.git/config' }, 'fs'), 'default').rule).toBe('deny: *-file(.git/config)');
  });

  it('a rule with an argument glob does not match a call without that argument', () => {
    const p = new Policy(spec({ deny: ['write-file(src/**)'] }, 'bypassPermissions'));
    expect(p.decide(tool('write-file', { content: 'x' }, 'fs'), 'bypassPermissions').decision).toBe('allow');
  });

  it('a path spelled differently is still caught', () => {
    const p = new Policy(spec({ deny: ['write-file(.git/**)'] }, 'bypassPermissions'));
    for (const path of ['.git/config', './.git/config', '/.git/config', 'src/../.git/hooks/pre-commit', '.git//config']) {
      expect(p.decide(tool('write-file', { path }, 'fs'), 'bypassPermissions').decision, path).toBe('deny');
    }
  });

  it('mesh:agent-* matches calls to agents by name', () => {
    const p = new Policy(spec({ ask: ['mesh:agent-*'] }));
    expect(p.decide({ kind: 'mesh', name: 'agent-x' }, 'default')).toMatchObject({ decision: 'ask', subject: 'mesh:agent-x', rule: 'ask: mesh:agent-*' });
    expect(p.decide({ kind: 'mesh', name: 'coder' }, 'default')).toMatchObject({ decision: 'allow', rule: 'mode default' });
    // A tool rule never matches a mesh call, and the reverse.
    expect(new Policy(spec({ deny: ['coder'] })).decide({ kind: 'mesh', name: 'coder' }, 'default').decision).toBe('allow');
    expect(new Policy(spec({ deny: ['mesh:grep'] })).decide(tool('grep', {}), 'default').decision).toBe('allow');
  });

  it('commit(GLOB): deny and ask when any changed path matches; allow only when every one does', () => {
    const p = new Policy(spec({ deny: ['commit(.git/**)'], ask: ['commit(src/**)'], allow: ['commit(docs/**)'] }, 'bypassPermissions'));
    const commit = (...paths: string[]): PolicyAction => ({ kind: 'commit', session: 's-1', paths });
    expect(p.decide(commit('README.md', '.git/config'), 'bypassPermissions')).toMatchObject({ decision: 'deny', subject: 'commit(s-1)' });
    expect(p.decide(commit('docs/a.md', 'src/x.ts'), 'bypassPermissions')).toMatchObject({ decision: 'ask', rule: 'ask: commit(src/**)' });
    expect(p.decide(commit('docs/a.md', 'docs/b.md'), 'default')).toMatchObject({ decision: 'allow', rule: 'allow: commit(docs/**)' });
    expect(p.decide(commit('docs/a.md', 'README.md'), 'default')).toMatchObject({ decision: 'ask', rule: 'mode default' });
    expect(new Policy(spec({ ask: ['commit'] }, 'bypassPermissions')).decide(commit(), 'bypassPermissions').decision).toBe('ask');
  });

  it('http(HOST-GLOB) over the request host', () => {
    const p = new Policy(spec({ deny: ['http(*.evil.test)'], allow: ['http(api.example.com)'] }));
    expect(p.decide({ kind: 'http', host: 'x.evil.test' }, 'bypassPermissions')).toMatchObject({ decision: 'deny', subject: 'http(x.evil.test)' });
    expect(p.decide({ kind: 'http', host: 'api.example.com' }, 'default').decision).toBe('allow');
    expect(p.decide({ kind: 'http', host: 'other.example.com' }, 'default')).toMatchObject({ decision: 'ask', rule: 'mode default' });
  });
});

describe('modes', () => {
  const p = new Policy(spec({}));
  const cases: Array<[string, PolicyAction, string, string, string]> = [
    // action, default, acceptEdits, bypassPermissions
    ['a read tool', tool('grep', { pattern: 'x' }), 'allow', 'allow', 'allow'],
    ['a session write (rw filesystem)', tool('write-file', { path: 'a' }, 'fs'), 'ask', 'allow', 'allow'],
    ['a tool with outbound http', tool('fetch', { url: 'https://x.test' }, 'http'), 'ask', 'ask', 'allow'],
    ['a call to an agent', { kind: 'mesh', name: 'coder' }, 'allow', 'allow', 'allow'],
    ['a commit', { kind: 'commit', session: 's-1', paths: ['a'] }, 'ask', 'ask', 'allow'],
    ['an outbound host', { kind: 'http', host: 'x.test' }, 'ask', 'ask', 'allow'],
  ];
  it.each(cases)('%s: default %s, acceptEdits %s, bypassPermissions %s', (_what, action, inDefault, inAcceptEdits, inBypass) => {
    expect(p.decide(action, 'default').decision).toBe(inDefault);
    expect(p.decide(action, 'acceptEdits').decision).toBe(inAcceptEdits);
    expect(p.decide(action, 'bypassPermissions').decision).toBe(inBypass);
  });

  it('bypassPermissions still obeys deny rules', () => {
    expect(new Policy(spec({ deny: ['grep'] })).decide(tool('grep', {}), 'bypassPermissions').decision).toBe('deny');
  });
});

describe('per-agent overrides and modes along a call chain', () => {
  const config = policySchema.parse({
    mode: 'default',
    rules: { deny: ['write-file(.git/**)'], allow: ['grep'] },
    agents: { coder: { mode: 'acceptEdits', rules: { deny: ['grep(secret*)'], ask: ['write-file(src/**)'] } }, helper: { mode: 'bypassPermissions' } },
  });

  it('an agent\'s rules come before the global ones in each list; its mode replaces policy.mode', () => {
    const coder = policySpecFor(config, 'coder', 'agent');
    expect(coder).toEqual({ mode: 'acceptEdits', caps: true, approvalTimeoutMs: 600_000, rules: { deny: ['grep(secret*)', 'write-file(.git/**)'], ask: ['write-file(src/**)'], allow: ['grep'] } });
    const p = new Policy(coder);
    expect(p.decide(tool('grep', { pattern: 'secret-key' }), 'acceptEdits').rule).toBe('deny: grep(secret*)');
    expect(p.decide(tool('write-file', { path: '.git/x' }, 'fs'), 'acceptEdits').rule).toBe('deny: write-file(.git/**)');
    // Other components keep the global rules and mode.
    expect(policySpecFor(config, 'supervisor', 'supervisor')).toEqual({ mode: 'default', caps: false, approvalTimeoutMs: 600_000, rules: { deny: ['write-file(.git/**)'], ask: [], allow: ['grep'] } });
  });

  it('the effective mode is the minimum along the chain: a subagent never acts above its parent', () => {
    const supervisor = new Policy(policySpecFor(config, 'supervisor', 'supervisor'));
    const coder = new Policy(policySpecFor(config, 'coder', 'agent'));
    const helper = new Policy(policySpecFor(config, 'helper', 'agent'));
    // The kernel calls the supervisor with no cap (or the task's mode).
    const s = supervisor.modesFor(undefined);
    expect(s).toEqual({ acting: 'default', passOn: 'bypassPermissions' });
    const c = coder.modesFor(s.passOn);
    expect(c).toEqual({ acting: 'acceptEdits', passOn: 'acceptEdits' });
    // helper is configured bypassPermissions but is called by coder (acceptEdits).
    expect(helper.modesFor(c.passOn)).toEqual({ acting: 'acceptEdits', passOn: 'acceptEdits' });
    // A task submitted with mode default caps everything.
    expect(coder.modesFor(supervisor.modesFor('default').passOn).acting).toBe('default');
  });
});

describe('config', () => {
  it('absent policy: mode default, no rules, no agents', () => {
    const { config } = readConfig(null, {});
    expect(config.policy).toEqual({ mode: 'default', rules: { deny: [], ask: [], allow: [] }, agents: {}, approvalTimeoutMs: 600_000 });
  });

  it('a bad pattern, mode or field is named with its path', () => {
    const dir = tempDir('policy-config');
    const file = join(dir, 'warden.config.json');
    writeFileSync(file, JSON.stringify({ policy: { mode: 'yolo', rules: { deny: ['write-file(.git/**'], asks: [] }, agents: { coder: { rules: { allow: ['mesh:'] } } } } }));
    let caught: unknown;
    try {
      readConfig(file, {});
    } catch (err) {
      caught = err;
    }
    expect(isWardenError(caught, 'E_CONFIG')).toBe(true);
    const issues = (caught as { detail: { issues: Array<{ path: string; message: string }> } }).detail.issues;
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i.message]));
    expect(byPath['policy.mode']).toMatch(/default|acceptEdits|bypassPermissions/);
    expect(byPath['policy.rules.deny.0']).toMatch(/"write-file\(\.git\/\*\*": unbalanced parentheses/);
    expect(byPath['policy.rules.asks']).toMatch(/unknown field \(known: deny, ask, allow\)/);
    expect(byPath['policy.agents.coder.rules.allow.0']).toMatch(/"mesh:": mesh:NAME-GLOB needs/);
  });
});
