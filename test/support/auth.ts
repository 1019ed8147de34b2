/** Authentication for tests that talk HTTP to a kernel. */
import { randomBytes } from 'node:crypto';
import type { Kernel } from '../../kernel/kernel.js';

/** A key created on `kernel` (named `name`, default `test`) and the headers that present it. */
export function authed(kernel: Kernel, name = 'test'): { key: string; keyId: string; headers: { authorization: string } } {
  const created = kernel.keys.create(name);
  return { key: created.key, keyId: created.id, headers: { authorization: `Bearer ${created.key}` } };
}

/** A fresh random key to hand a child `warden serve` as `WARDEN_API_KEY`, with its headers. */
export function envKey(): { key: string; env: { WARDEN_API_KEY: string }; headers: { authorization: string } } {
  const key = `wdn_${randomBytes(32).toString('base64url')}`;
  return { key, env: { WARDEN_API_KEY: key }, headers: { authorization: `Bearer ${key}` } };
}
