// The web UI in headless Chromium: a task's tool calls and final status appear live, from the
// patch stream, without a reload; a browser without a login gets the login form.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import type { FastifyInstance } from 'fastify';
import { Kernel } from '../../kernel/kernel.js';
import { buildServer } from '../../kernel/server/index.js';
import { startScriptedServer, type ScriptedServer } from '../support/scripted-openai.js';
import { realRepository, tempDir } from '../support/fixtures.js';
import { authed } from '../support/auth.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
let server: ScriptedServer;
let kernel: Kernel;
let app: FastifyInstance;
let browser: Browser;
let base: string;

beforeAll(async () => {
  server = await startScriptedServer((n) => {
    if (n === 0) return { toolCalls: [{ name: 'grep', arguments: { pattern: 'class Help\\b' } }] };
    if (n === 1) return { toolCalls: [{ name: 'edit-file', arguments: { path: 'lib/help.js', old_string: 'class Help {', new_string: 'class Help { // formats help' } }] };
    return { content: 'Documented Help.' };
  });
  kernel = await Kernel.start({ dataDir: tempDir('data'), baseURL: server.baseURL, quiet: true });
  app = await buildServer(kernel);
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await app?.close();
  await kernel?.close();
  await server?.close();
});

describe('web UI', () => {
  it('shows a submitted task, its tool calls live, the final status and the diff without a reload', async () => {
    const page = await browser.newPage();
    // The one-time URL `warden serve` prints: it sets the login cookie and redirects to the UI.
    await page.goto(`${base}/login?token=${kernel.keys.createLoginToken(authed(kernel, 'browser').keyId)}`);
    expect(new URL(page.url()).pathname).toBe('/');
    // A marker that a reload would wipe: everything below must arrive through the patch stream.
    await page.evaluate(() => ((window as unknown as { marker: number }).marker = 42));
    await page.getByText(/live · seq/).waitFor();
    const repo = realRepository();
    await page.fill('textarea[name=task]', 'Document the Help class');
    await page.fill('input[name=workspace]', repo);
    await page.fill('input[name=model]', 'scripted');
    await page.click('#submit button[type=submit]');
    await page.locator('#tool-calls tr', { hasText: 'coder → grep.call' }).waitFor();
    await page.locator('#tool-calls tr', { hasText: 'coder → edit-file.call' }).waitFor();
    await page.locator('#task-status', { hasText: 'succeeded' }).waitFor({ timeout: 30_000 });
    await expect(page.locator('#diff').textContent()).resolves.toContain('+class Help { // formats help');
    await expect(page.locator('#tasks li').first().textContent()).resolves.toContain('succeeded');
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    await page.screenshot({ path: `${tempDir('shot')}/ui.png` });
  });

  it('without a login shows the login form; a wrong key is refused there, a good one opens the live UI', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(base);
      await page.locator('#login').waitFor();
      await expect(page.locator('#conn').textContent()).resolves.toBe('not logged in');
      await page.fill('#login input[name=key]', 'wdn_not-a-key-at-all');
      await page.click('#login button[type=submit]');
      await page.locator('#login-error', { hasText: 'warden key create' }).waitFor();
      await page.fill('#login input[name=key]', authed(kernel, 'pasted').key);
      await page.click('#login button[type=submit]');
      await page.getByText(/live · seq/).waitFor();
      await expect(page.locator('#login').isHidden()).resolves.toBe(true);
      // The cookie is HttpOnly: the page's scripts cannot read it.
      expect(await page.evaluate(() => document.cookie)).toBe('');
      expect((await context.cookies()).find((c) => c.name === 'warden_login')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    } finally {
      await context.close();
    }
  });
});
