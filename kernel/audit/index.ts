/**
 * The tamper-evident audit log: every grant, denial, limit hit, commit, key change and
 * configuration change is a row of the store's `audit` table, chained by HMAC-SHA256 under a key
 * kept beside the store (`audit.key`), with a MAC'd head anchor (`audit.head`) that exposes a
 * truncation. `warden audit verify` names the first entry that was edited, deleted, reordered or
 * cut off. Entries hold names, never secret values (API keys, tokens, environment values).
 *
 * What it does not defend against: someone holding `audit.key` can rewrite the whole log, and
 * someone who kept an old `audit.head` can cut the log back to it (the anchor is local; exporting
 * it elsewhere would close that).
 */
export { canonicalJson } from './canonical.js';
export { AuditChain, GENESIS_HASH, entryHash, type AuditChainOptions, type AuditEntry, type AuditRow } from './chain.js';
export { AUDIT_HEAD_FILE, AUDIT_KEY_FILE, readHead, type HeadRead } from './files.js';
export { auditConfig, configDigests, CONFIG_DIGEST_META, type ConfigDigests } from './config.js';
export { verifyAudit, type AuditFinding, type AuditProblem, type AuditReport, type AuditSource } from './verify.js';
