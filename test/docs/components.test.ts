// docs/components.md, followed word by word: every fenced sample of the guide is extracted and
// exercised here, in order, the way a reader would use it. The guide is the source; nothing here
// repeats its samples.
//
// How a block's info string says what to do with it:
//   ```sh run                     run in bash, in the reader's first terminal (cwd and exported
//                                 variables carry over to the next `sh run`); must exit 0, or
//                                 `exit=N`
//   ```sh run terminal=NAME ready="TEXT"
//                                 a long-running command in another terminal: started in the
//                                 background, in a fresh shell in ~; the guide goes on once its
//                                 output shows TEXT; stopped with SIGINT (Ctrl-C) at the end
//   ```text output [from=NAME [interrupt[=NAME,…]]]
//                                 what the previous `sh run` printed (or, from=NAME, what that
//                                 terminal prints next, waited for; `interrupt`: after Ctrl-C in
//                                 it, or in the terminals named): each line must appear, in
//                                 order; `…` stands for anything
//   ```LANG file=PATH             written to ~/PATH (the reader pastes it into that file)
//   ```LANG edit=PATH line="TEXT" the one line of ~/PATH containing TEXT replaced by the block
//   ```LANG check=PATH            must equal ~/PATH (a file `warden new` wrote; JSON compared as data)
//   ```LANG from=PATH             quoted from this repository's PATH, verbatim
//   ```json manifest              a manifest: the kernel's manifest schema must accept it
//   ```sh setup                   installing Warden (git clone, npm install, npm link) or the C
//                                 toolchain (apt-get): not run, reported skipped — this test runs
//                                 inside the checkout, with `warden` a symlink to bin/warden.js on
//                                 PATH (what `npm link` makes), and checks for the toolchain
//   needs=c | needs=rust          on any block: run only when that toolchain is present;
//                                 otherwise the guide's section is reported skipped, with why
//   clock=start | clock=stop      the scaffold-to-first-call time is measured between these
// The reader's home is a fresh temporary directory; port 8787 is replaced by a free port;
// `node --test` uses the reporter it uses in a terminal (spec).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { parseManifest } from '../../kernel/grants/index.js';
import { tempDir } from '../support/fixtures.js';
import { freePort } from '../support/net.js';

const GUIDE = join(PACKAGE_ROOT, 'docs/components.md');

/** One fenced block of the guide. */
interface Block {
  lang: string;
  attrs: Record<string, string>;
  body: string;
  /** 1-based line of the opening fence, for messages. */
  line: number;
  /** The `## ` heading it is under. */
  section: string;
}

function parseAttrs(info: string): { lang: string; attrs: Record<string, string> } {
  const [lang = '', ...rest] = info.trim().split(/\s+/);
  const attrs: Record<string, string> = {};
  for (const m of rest.join(' ').matchAll(/([\w-]+)(?:=("[^"]*"|\S+))?/g)) attrs[m[1]!] = m[2] === undefined ? '' : m[2].replace(/^"|"$/g, '');
  return { lang, attrs };
}

/** Every fenced block, with the section it belongs to. */
function parseGuide(text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split('\n');
  let section = '(preamble)';
  for (let i = 0; i < lines.length; i++) {
    const heading = /^## (.*)/.exec(lines[i]!);
    if (heading) section = heading[1]!.trim();
    const fence = /^(`{3,})(.*)$/.exec(lines[i]!);
    if (!fence) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== fence[1]; i++) body.push(lines[i]!);
    blocks.push({ ...parseAttrs(fence[2]!), body: body.join('\n') + '\n', line: start + 1, section });
  }
  return blocks;
}

/** What the test does with a block, or null when the block says nothing it understands. */
function roleOf(b: Block): string | null {
  if ('file' in b.attrs) return 'file';
  if ('edit' in b.attrs && 'line' in b.attrs) return 'edit';
  if ('check' in b.attrs) return 'check';
  if ('from' in b.attrs && b.lang !== 'text') return 'quote';
  if (b.lang === 'sh' && 'run' in b.attrs) return 'terminal' in b.attrs ? 'background' : 'run';
  if (b.lang === 'sh' && 'setup' in b.attrs) return 'setup';
  if (b.lang === 'text' && 'output' in b.attrs) return 'output';
  if (b.lang === 'json' && 'manifest' in b.attrs) return 'manifest';
  return null;
}

// ---- toolchains ----------------------------------------------------------------------------

function runs(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? r.stdout : null;
}

/** Whether the C sample can be built here: Debian's clang-16 with wasi-libc for wasm32. */
function cToolchain(): { ok: boolean; reason: string } {
  if (runs('clang-16', ['--version']) === null) return { ok: false, reason: 'clang-16 is not installed (apt-get install clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32)' };
  const libc = runs('clang-16', ['--target=wasm32-wasi', '-print-file-name=libc.a'])?.trim();
  if (!libc || !existsSync(libc)) return { ok: false, reason: 'wasi-libc is not installed (apt-get install wasi-libc)' };
  const rt = runs('clang-16', ['--target=wasm32-wasi', '-print-libgcc-file-name'])?.trim();
  if (!rt || !existsSync(rt)) return { ok: false, reason: 'the wasm32 clang runtime is not installed (apt-get install libclang-rt-16-dev-wasm32)' };
  return { ok: true, reason: 'clang-16 + wasi-libc present' };
}

/** Whether the Rust sample can be built here: cargo with the wasm32-wasip2 target. */
function rustToolchain(): { ok: boolean; reason: string } {
  if (runs('cargo', ['--version']) === null) return { ok: false, reason: 'no cargo on PATH' };
  const targets = runs('rustup', ['target', 'list', '--installed']);
  if (targets?.split('\n').includes('wasm32-wasip2')) return { ok: true, reason: 'cargo with the wasm32-wasip2 target' };
  const component = runs('cargo', ['component', '--version']) !== null;
  return {
    ok: false,
    reason: `cargo is present but the wasm32-wasip2 target is not installed (\`rustup target add wasm32-wasip2\`)${component ? '' : ' and `cargo component` is not either'}`,
  };
}

// ---- the reader's shell ----------------------------------------------------------------------

/** A line of an output block as a pattern: literal text, `…` matching anything on the line. */
function linePattern(line: string): RegExp {
  return new RegExp(line.trim().split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[^\\n]*?'));
}

/** Where the expected lines match in `text` from `from`, in order; the end of the last match, or a message. */
function matchLines(text: string, expected: string, from = 0): { end: number } | { missing: string } {
  let at = from;
  for (const line of expected.split('\n').filter((l) => l.trim())) {
    const re = linePattern(line);
    const m = re.exec(text.slice(at));
    if (!m) return { missing: line };
    at += m.index + m[0].length;
  }
  return { end: at };
}

/** A long-running command in its own terminal. */
interface Terminal {
  child: ChildProcess;
  output: string;
  /** How far `text output from=NAME` blocks have read. */
  cursor: number;
  exited: Promise<number | null>;
}

class Reader {
  readonly home = tempDir('guide-home');
  private readonly shim = tempDir('guide-bin');
  private readonly state = tempDir('guide-shell');
  private cwd = this.home;
  /** What the last `sh run` printed (stdout and stderr as they interleaved). */
  lastOutput = '';
  readonly terminals = new Map<string, Terminal>();
  port = 8787;
  clockStart = 0;
  clockStop = 0;
  /** Wall time of each step between clock=start and clock=stop: [first command line, ms]. */
  readonly steps: Array<[string, number]> = [];

  constructor() {
    // What `npm link` makes: `warden` on PATH, a symlink to bin/warden.js.
    symlinkSync(join(PACKAGE_ROOT, 'bin/warden.js'), join(this.shim, 'warden'));
    writeFileSync(join(this.state, 'env'), '');
  }

  /** A fresh terminal's environment: nothing of this test's (no API keys, no OPENAI_*). */
  env(): NodeJS.ProcessEnv {
    return {
      PATH: `${this.shim}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
      HOME: this.home,
      WARDEN_HOME: PACKAGE_ROOT,
      TMPDIR: tmpdir(),
      LANG: 'C.UTF-8',
      NO_COLOR: '1',
      // `node --test` reports as it does in a terminal (its default off a TTY is TAP).
      NODE_OPTIONS: '--test-reporter=spec',
    };
  }

  port8787(text: string): string {
    return text.replaceAll('8787', String(this.port));
  }

  /** Run a block in the first terminal; its cwd and exports carry over. */
  async run(block: Block): Promise<{ code: number | null; output: string }> {
    const script = join(this.state, 'block.sh');
    writeFileSync(
      script,
      [
        `source ${JSON.stringify(join(this.state, 'env'))}`,
        `cd ${JSON.stringify(this.cwd)}`,
        `trap 'pwd > ${join(this.state, 'cwd')}; export -p > ${join(this.state, 'env')}' EXIT`,
        'exec 2>&1',
        'set -e',
        this.port8787(block.body),
      ].join('\n'),
    );
    const child = spawn('bash', [script], { env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    if (existsSync(join(this.state, 'cwd'))) this.cwd = readFileSync(join(this.state, 'cwd'), 'utf8').trim();
    this.lastOutput = output;
    return { code, output };
  }

  /** Start a block in a terminal of its own (a fresh shell in ~) and wait for its ready text. */
  async start(block: Block): Promise<void> {
    const name = block.attrs['terminal']!;
    const script = join(this.state, `${name}.sh`);
    writeFileSync(script, ['exec 2>&1', 'set -e', `cd ${JSON.stringify(this.home)}`, this.port8787(block.body)].join('\n'));
    // Its own process group, so Ctrl-C reaches every process of it.
    const child = spawn('bash', [script], { env: this.env(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const terminal: Terminal = { child, output: '', cursor: 0, exited: new Promise((resolve) => child.on('close', (c) => resolve(c))) };
    child.stdout!.on('data', (d: Buffer) => (terminal.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (terminal.output += d.toString()));
    this.terminals.set(name, terminal);
    const ready = block.attrs['ready'];
    // Waiting for it to be ready reads nothing: the guide may quote that output next.
    if (ready) await this.waitFor(name, ready, 120_000, false);
  }

  /** Wait until terminal `name` prints `expected` (lines in order, after what was read before). */
  async waitFor(name: string, expected: string, ms = 90_000, advance = true): Promise<void> {
    const terminal = this.terminals.get(name);
    if (!terminal) throw new Error(`no terminal named ${name} was started before this output block`);
    let exitCode: number | null | undefined;
    void terminal.exited.then((c) => (exitCode = c));
    const end = Date.now() + ms;
    for (;;) {
      const m = matchLines(terminal.output, this.port8787(expected), terminal.cursor);
      if ('end' in m) {
        if (advance) terminal.cursor = m.end;
        return;
      }
      if (exitCode !== undefined || Date.now() > end) {
        throw new Error(`terminal ${name} ${exitCode !== undefined ? `exited (${exitCode})` : `printed nothing matching in ${ms} ms`}; missing "${m.missing}"; it printed:\n${terminal.output.slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Record a step's time while the scaffold-to-first-call clock runs. */
  timed(block: Block, started: number): void {
    if (this.clockStart && !this.clockStop) this.steps.push([block.body.trim().split('\n').at(-1)!, performance.now() - started]);
  }

  /** Ctrl-C in terminal `name`: SIGINT to its process group. */
  interrupt(name: string): void {
    const terminal = this.terminals.get(name);
    if (!terminal) throw new Error(`no terminal named ${name} was started`);
    try {
      process.kill(-terminal.child.pid!, 'SIGINT');
    } catch {
      /* already gone */
    }
  }

  /** Ctrl-C every terminal and wait for it to end. */
  async stopAll(): Promise<void> {
    for (const terminal of this.terminals.values()) {
      if (terminal.child.exitCode !== null || terminal.child.signalCode !== null) continue;
      try {
        process.kill(-terminal.child.pid!, 'SIGINT');
      } catch {
        /* already gone */
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-terminal.child.pid!, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }, 20_000);
      await terminal.exited;
      clearTimeout(timer);
    }
  }

  cleanup(): void {
    for (const dir of [this.home, this.shim, this.state]) rmSync(dir, { recursive: true, force: true });
  }
}

// ---- one section of the guide -------------------------------------------------------------

function jsonEqual(a: string, b: string): boolean {
  return JSON.stringify(JSON.parse(a)) === JSON.stringify(JSON.parse(b));
}

async function follow(reader: Reader, block: Block): Promise<void> {
  const where = `docs/components.md:${block.line}`;
  switch (roleOf(block)) {
    case 'file': {
      const path = join(reader.home, block.attrs['file']!);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, block.body);
      return;
    }
    case 'edit': {
      const path = join(reader.home, block.attrs['edit']!);
      const lines = readFileSync(path, 'utf8').split('\n');
      const at = lines.flatMap((l, i) => (l.includes(block.attrs['line']!) ? [i] : []));
      expect(at.length, `${where}: exactly one line of ${block.attrs['edit']} should contain "${block.attrs['line']}"`).toBe(1);
      lines.splice(at[0]!, 1, ...block.body.replace(/\n$/, '').split('\n'));
      writeFileSync(path, lines.join('\n'));
      return;
    }
    case 'check': {
      const path = join(reader.home, block.attrs['check']!);
      expect(existsSync(path), `${where}: ${block.attrs['check']} should exist`).toBe(true);
      const actual = readFileSync(path, 'utf8');
      if (block.lang === 'json') expect(jsonEqual(actual, block.body), `${where}: ${block.attrs['check']} differs from the guide:\n${actual}`).toBe(true);
      else expect(actual.trim(), `${where}: ${block.attrs['check']} differs from the guide`).toBe(block.body.trim());
      return;
    }
    case 'quote': {
      const source = readFileSync(join(PACKAGE_ROOT, block.attrs['from']!), 'utf8');
      expect(source.includes(block.body.trimEnd()), `${where}: not found verbatim in ${block.attrs['from']}`).toBe(true);
      return;
    }
    case 'manifest':
      parseManifest(JSON.parse(block.body), where);
      return;
    case 'setup':
      return;
    case 'background': {
      const t = performance.now();
      await reader.start(block);
      reader.timed(block, t);
      return;
    }
    case 'run': {
      if (block.attrs['clock'] === 'start') reader.clockStart = performance.now();
      const t = performance.now();
      const { code, output } = await reader.run(block);
      const want = Number(block.attrs['exit'] ?? 0);
      expect(code, `${where}: exit code of\n${block.body}\nwhich printed:\n${output}`).toBe(want);
      reader.timed(block, t);
      if (block.attrs['clock'] === 'stop') reader.clockStop = performance.now();
      return;
    }
    case 'output': {
      if (block.attrs['from']) {
        if ('interrupt' in block.attrs) for (const name of (block.attrs['interrupt'] || block.attrs['from']).split(',')) reader.interrupt(name);
        await reader.waitFor(block.attrs['from'], block.body);
        return;
      }
      const m = matchLines(reader.lastOutput, reader.port8787(block.body));
      expect('end' in m, `${where}: expected output line "${'missing' in m ? m.missing : ''}" not printed; the command printed:\n${reader.lastOutput}`).toBe(true);
      return;
    }
    default:
      throw new Error(`${where}: a \`\`\`${block.lang} block without an instruction this test understands (see the top of test/docs/components.test.ts)`);
  }
}

// ---- the guide ------------------------------------------------------------------------------

const blocks = existsSync(GUIDE) ? parseGuide(readFileSync(GUIDE, 'utf8')) : [];
const sections = [...new Set(blocks.map((b) => b.section))];
const toolchains = { c: cToolchain(), rust: rustToolchain() };

describe('docs/components.md, followed word by word', () => {
  const reader = new Reader();
  beforeAll(async () => {
    reader.port = await freePort();
  });
  afterAll(async () => {
    await reader.stopAll();
    reader.cleanup();
  });

  it('every sample says what the test does with it', () => {
    expect(blocks.length).toBeGreaterThan(20);
    const unmarked = blocks.filter((b) => roleOf(b) === null).map((b) => `line ${b.line}: \`\`\`${b.lang} ${JSON.stringify(b.attrs)}`);
    expect(unmarked).toEqual([]);
    const needs = blocks.map((b) => b.attrs['needs']).filter((n) => n !== undefined && !(n in toolchains));
    expect(needs).toEqual([]);
  });

  const setup = blocks.filter((b) => roleOf(b) === 'setup');
  it.skip(`not run: the ${setup.length} \`sh setup\` blocks (lines ${setup.map((b) => b.line).join(', ')}: installing Warden and the C toolchain) — this test runs inside the checkout with \`warden\` linked on PATH, and checks the C toolchain instead of installing it`, () => {});

  for (const section of sections) {
    const own = blocks.filter((b) => b.section === section && roleOf(b) !== 'setup');
    if (own.length === 0) continue;
    const need = own.map((b) => b.attrs['needs']).find((n) => n !== undefined) as keyof typeof toolchains | undefined;
    const toolchain = need ? toolchains[need] : { ok: true, reason: '' };
    const name = need ? `${section} (${toolchain.ok ? toolchain.reason : `skipped: ${toolchain.reason}`})` : section;
    if (!toolchain.ok) console.log(`docs/components.md: "${section}" not run: ${toolchain.reason}`);
    it.skipIf(!toolchain.ok)(name, async () => {
      for (const block of own) await follow(reader, block);
      if (own.some((b) => b.attrs['clock'] === 'start')) {
        expect(reader.clockStop).toBeGreaterThan(reader.clockStart);
        const steps = reader.steps.map(([command, ms]) => `  ${(ms / 1000).toFixed(1).padStart(6)} s  ${command}`).join('\n');
        console.log(`docs/components.md quick start: scaffold to first call (\`warden new\` to the first successful call through the running kernel) in ${((reader.clockStop - reader.clockStart) / 1000).toFixed(1)} s:\n${steps}`);
      }
    }, 600_000);
  }
});
