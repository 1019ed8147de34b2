// The web UI in headless Chromium against a real kernel on a real port: a task submitted from the
// form streams in live (steps, tool calls, streamed text, final status, highlighted diff) without
// a reload; the login form; approving a policy `ask` from the task page; the components page with
// effective grants; a kernel restart the page survives. Screenshots at 1280×800 and 375×812 go
// to artifacts/screenshots/.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import type { FastifyInstance } from 'fastify';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { PACKAGE_ROOT } from '../../kernel/paths.js';
import { realRepository, tempDir } from '../support/fixtures.js';
import { authed } from '../support/auth.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const SHOTS = join(PACKAGE_ROOT, 'artifacts/screenshots');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 812 };

/** One answer of the streaming model: tool calls, or text sent in pieces; `gate` holds the stream after the first piece. */
type Turn = { toolCalls: Array<{ name: string; arguments: Record<string, unknown> }> } | { text: string[]; gate?: Promise<void> };

/**
 * An OpenAI-compatible model that streams (SSE chunks as the API sends them). The answer is
 * chosen by `script(prompt, turn)`: the task's prompt (its first user message) and the number of
 * assistant messages so far. A text answer with a `gate` sends its first piece, then waits for
 * the gate before the rest: the test sees the text while it streams, without timing.
 */
async function startStreamingModel(script: (prompt: string, turn: number) => Turn): Promise<{ baseURL: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', async () => {
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) return void res.writeHead(404).end();
      const request = JSON.parse(body) as { model: string; messages: Array<{ role: string; content: string | null }> };
      const prompt = request.messages.find((m) => m.role === 'user')?.content ?? '';
      const turn = script(prompt, request.messages.filter((m) => m.role === 'assistant').length);
      const send = (delta: Record<string, unknown>, finish: string | null = null) =>
        res.write(`data: ${JSON.stringify({ id: 'chatcmpl-ui', object: 'chat.completion.chunk', created: 0, model: request.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      send({ role: 'assistant', content: '' });
      if ('toolCalls' in turn) {
        turn.toolCalls.forEach((call, index) =>
          send({ tool_calls: [{ index, id: `call_${index}`, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.arguments) } }] }));
      } else {
        for (const [i, piece] of turn.text.entries()) {
          send({ content: piece });
          if (i === 0 && turn.gate) await turn.gate;
        }
      }
      send({}, 'toolCalls' in turn ? 'tool_calls' : 'stop');
      res.write(`data: ${JSON.stringify({ id: 'chatcmpl-ui', object: 'chat.completion.chunk', created: 0, model: request.model, choices: [], usage: { prompt_tokens: 1200, completion_tokens: 80, total_tokens: 1280 } })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** A promise and the function that settles it. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const streaming = gate();
const FIRST_PIECE = 'I added a comment to the Option class. ';
const REST = ['It explains that an Option describes one command-line flag, ', 'its value and its default.'];

let model: Awaited<ReturnType<typeof startStreamingModel>>;
let kernel: Kernel;
let app: FastifyInstance;
let browser: Browser;
let page: Page;
let dataDir: string;
let port: number;
let base: string;
let repo: string;

async function startKernel(listenPort: number): Promise<void> {
  kernel = await Kernel.start({ dataDir, quiet: true });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: listenPort });
  port = (app.server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
}

/**
 * Screenshots of `page` at desktop and phone width (then back to desktop), scrolled to `focus`
 * when given; the phone width must not scroll sideways.
 */
async function shoot(name: string, focus?: Locator): Promise<void> {
  await focus?.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(SHOTS, `${name}-1280x800.png`) });
  await page.setViewportSize(PHONE);
  expect(await page.evaluate(() => document.documentElement.scrollWidth), `${name}: no horizontal scroll at 375 px`).toBeLessThanOrEqual(PHONE.width);
  await focus?.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(SHOTS, `${name}-375x812.png`) });
  await page.setViewportSize(DESKTOP);
  await page.evaluate(() => window.scrollTo(0, 0));
}

async function marker(): Promise<number | undefined> {
  return page.evaluate(() => (window as unknown as { marker?: number }).marker);
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  model = await startStreamingModel((prompt, turn) => {
    if (prompt.includes('Document the Option class')) {
      if (turn === 0) return { toolCalls: [{ name: 'grep', arguments: { pattern: 'class Option\\b' } }] };
      if (turn === 1) return { toolCalls: [{ name: 'edit-file', arguments: { path: 'lib/option.js', old_string: 'class Option {', new_string: 'class Option { // one command-line flag' } }] };
      return { text: [FIRST_PIECE, ...REST], gate: streaming.promise };
    }
    if (prompt.includes('Document the Help class')) {
      if (turn === 0) return { toolCalls: [{ name: 'edit-file', arguments: { path: 'lib/help.js', old_string: 'class Help {', new_string: 'class Help { // formats help' } }] };
      return { text: ['Documented Help.'] };
    }
    return { text: ['Nothing to do.'] };
  });
  dataDir = tempDir('data');
  // Edits are allowed, except lib/help.js, which asks (an approval the UI decides).
  writeFileSync(join(dataDir, 'warden.config.json'), JSON.stringify({
    backends: [{ name: 'local', baseURL: model.baseURL, apiKeyEnv: 'OPENAI_API_KEY', prices: { '*': { inputPerMTok: 3, outputPerMTok: 15 } } }],
    policy: { mode: 'acceptEdits', rules: { ask: ['edit-file(lib/help.js)'] } },
  }));
  repo = realRepository();
  await startKernel(0);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: DESKTOP });
});

afterAll(async () => {
  streaming.open();
  await browser?.close();
  await app?.close();
  await kernel?.close();
  await model?.close();
});

describe('web UI', () => {
  it('streams a task submitted from the form: steps, tool calls, the text as it arrives, the final status and a highlighted diff, without a reload', async () => {
    // The one-time URL `warden serve` prints: it sets the login cookie and redirects to the UI.
    await page.goto(`${base}/login?token=${kernel.keys.createLoginToken(authed(kernel, 'browser').keyId)}`);
    expect(new URL(page.url()).pathname).toBe('/');
    // A marker that a reload would wipe: everything below must arrive through the patch stream.
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await page.locator('#conn[data-status=live]').waitFor();
    await page.fill('textarea[name=task]', 'Document the Option class');
    await page.fill('input[name=workspace]', repo);
    await page.fill('input[name=model]', 'scripted');
    await page.click('#submit button[type=submit]');
    await page.waitForURL(/\/tasks\/t-[0-9a-f]{8}$/);
    const id = new URL(page.url()).pathname.split('/')[2]!;

    await page.locator('.tl-step', { hasText: 'supervisor' }).first().waitFor();
    await page.locator('.tl-call[data-status=ok]', { hasText: 'coder → grep.call' }).waitFor();
    await page.locator('.tl-call[data-status=ok]', { hasText: 'coder → edit-file.call' }).waitFor();
    // The third turn's text, while the model holds the rest of it back.
    const turn = page.locator('.tl-turn[data-turn="3"]');
    await turn.locator('.turn-text', { hasText: FIRST_PIECE.trim() }).waitFor();
    expect(await turn.getAttribute('data-status')).toBe('streaming');
    expect(await turn.textContent()).not.toContain(REST[0]);
    await expect(page.locator('#task-status').getAttribute('data-status')).resolves.toBe('running');
    await expect(page.locator('.tl-turn[data-turn="1"] .chip').textContent()).resolves.toMatch(/^grep\(/);
    await shoot('task-running', turn);

    streaming.open();
    await page.locator('#task-status[data-status=succeeded]').waitFor({ timeout: 30_000 });
    await page.locator('.tl-turn[data-turn="3"][data-status=done]').waitFor();
    expect(await turn.locator('.turn-text').textContent()).toBe(FIRST_PIECE + REST.join(''));
    // The diff: the added line, its code highlighted (the keyword `class` in its own span).
    const added = page.locator('#diff tr.add', { hasText: 'class Option { // one command-line flag' });
    await added.waitFor();
    await expect(added.locator('.hljs-keyword').first().textContent()).resolves.toBe('class');
    await expect(added.locator('.hljs-comment').textContent()).resolves.toBe('// one command-line flag');
    await expect(page.locator('#diff tr.del', { hasText: 'class Option {' }).count()).resolves.toBe(1);
    await shoot('task-diff', page.locator('#diff'));
    // Usage: 3 turns of 1200 + 80 tokens at $3 / $15 per million, all served by scripted@local.
    await expect(page.locator('#task-cost').textContent()).resolves.toBe(`$${(3 * (1200 * 3 + 80 * 15) / 1e6).toFixed(4)}`);
    await expect(page.locator('#usage tbody tr').textContent()).resolves.toBe(`scripted@local33.8k$${(3 * (1200 * 3 + 80 * 15) / 1e6).toFixed(4)}`);
    await page.click('a.back');
    await page.locator(`#tasks tr[data-task=${id}] [data-status=succeeded]`).waitFor();
    expect(await marker()).toBe(42);
  });

  it('without a login shows the login form; a wrong key is refused there, a good one opens the live UI', async () => {
    const context = await browser.newContext();
    try {
      const other = await context.newPage();
      await other.goto(base);
      await other.locator('#login').waitFor();
      await expect(other.locator('#conn').textContent()).resolves.toBe('not logged in');
      await other.fill('#login input[name=key]', 'wdn_not-a-key-at-all');
      await other.click('#login button[type=submit]');
      await other.locator('#login-error', { hasText: 'warden key create' }).waitFor();
      await other.fill('#login input[name=key]', authed(kernel, 'pasted').key);
      await other.click('#login button[type=submit]');
      await other.locator('#conn[data-status=live]').waitFor();
      await expect(other.locator('#login').count()).resolves.toBe(0);
      // The cookie is HttpOnly: the page's scripts cannot read it.
      expect(await other.evaluate(() => document.cookie)).toBe('');
      expect((await context.cookies()).find((c) => c.name === 'warden_login')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
      // A client-side route loads the app too (the kernel's SPA fallback), narrowed to that task.
      await other.goto(`${base}/tasks/t-00000000`);
      await other.getByText('No task t-00000000 in this kernel.').waitFor();
    } finally {
      await context.close();
    }
  });

  it('approving a policy `ask` on the task page lets the task go on and succeed', async () => {
    await page.click('nav a[href="/"]');
    await page.fill('textarea[name=task]', 'Document the Help class');
    await page.fill('input[name=workspace]', repo);
    await page.click('#submit button[type=submit]');
    await page.waitForURL(/\/tasks\/t-[0-9a-f]{8}$/);
    const card = page.locator('#approvals [data-approval]');
    await card.waitFor({ timeout: 30_000 });
    await expect(card.locator('.approval-subject').textContent()).resolves.toBe('edit-file(lib/help.js)');
    await expect(page.locator('#task-status').getAttribute('data-status')).resolves.toBe('running');
    await shoot('approval-pending');
    await card.getByRole('button', { name: 'Approve' }).click();
    await page.locator('#task-status[data-status=succeeded]').waitFor({ timeout: 30_000 });
    await expect(page.locator('#approvals').count()).resolves.toBe(0);
    await expect(page.locator('.tl-approval [data-status=approved]').count()).resolves.toBe(1);
    await expect(page.locator('.tl-approval').textContent()).resolves.toMatch(/decided by ui/);
    await page.locator('#diff tr.add', { hasText: 'class Help { // formats help' }).waitFor();
    expect(await marker()).toBe(42);
  });

  it('the components page shows each component with its pin, status, workers and effective grants', async () => {
    await page.click('nav a[href="/components"]');
    const writeFile = page.locator('#components tr[data-component=write-file]');
    await writeFile.locator('.chip', { hasText: 'session:rw' }).waitFor();
    const coder = page.locator('#components tr[data-component=coder]');
    await expect(coder.locator('.chip-inference').count()).resolves.toBeGreaterThan(0);
    await expect(coder.locator('.chip-mesh', { hasText: 'mesh write-file' }).count()).resolves.toBe(1);
    const sha = kernel.state.current.components['coder']!.sha256;
    await expect(coder.locator('.hash').getAttribute('title')).resolves.toBe(`sha256 ${sha}`);
    await expect(coder.locator('[data-status=loaded]').count()).resolves.toBe(1);
    await shoot('components');
    // The route behind the grants: effective grants with their source, env variables by name only.
    const api = (await (await fetch(`${base}/api/components`, { headers: authed(kernel, 'components').headers })).json()) as Array<Record<string, unknown>>;
    const coderInfo = api.find((c) => c['name'] === 'coder') as { grants: { env: unknown; inference: string[] }; explain: Array<{ capability: string; source: string }> };
    expect(coderInfo.grants.env).toEqual([]);
    expect(coderInfo.explain.find((e) => e.capability === 'inference')?.source).toBe('built-in default (as requested)');
    expect(await marker()).toBe(42);
  });

  it('survives a kernel restart on the same port: offline, then live again with the document current and the resync counted', async () => {
    await page.click('nav a[href="/"]');
    await page.locator('#tasks tr[data-task]').first().waitFor();
    await page.locator('#conn[data-status=live]').waitFor();
    const resyncsBefore = Number(await page.locator('#conn').getAttribute('data-resyncs'));
    const tasksBefore = await page.locator('#tasks tr[data-task]').count();
    await app.close();
    await kernel.close();
    await page.locator('#conn[data-status=offline]').waitFor();
    await startKernel(port);
    await page.locator('#conn[data-status=live]').waitFor({ timeout: 30_000 });
    expect(Number(await page.locator('#conn').getAttribute('data-resyncs'))).toBeGreaterThan(resyncsBefore);
    // The new kernel's document, then its changes: a task submitted over REST appears live.
    const res = await fetch(`${base}/api/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authed(kernel, 'after-restart').headers },
      body: JSON.stringify({ task: 'Say hello after the restart', workspace: repo, model: 'scripted' }),
    });
    const { id } = (await res.json()) as { id: string };
    await page.locator(`#tasks tr[data-task=${id}] [data-status=succeeded]`).waitFor({ timeout: 30_000 });
    await expect(page.locator('#tasks tr[data-task]').count()).resolves.toBe(tasksBefore + 1);
    await shoot('tasks');
    expect(await marker()).toBe(42);
  });
});
