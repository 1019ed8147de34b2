/**
 * The policy engine: rules `deny` → `ask` → `allow` → mode default over tool calls, calls to
 * agents, session commits and outbound hosts, inside tasks. Tool and mesh calls are decided in
 * the caller's worker (each worker gets its component's {@link PolicySpec} at start); commits
 * and outbound hosts on the main thread, where those host services run. An `ask` becomes an
 * approval (`kernel/approvals`).
 */
import type { PolicyConfig } from './config.js';
import { Policy, type PolicySpec } from './engine.js';

export { Policy, POLICY_MODES, minMode, compileRules, type PolicyAction, type PolicyDecision, type PolicyMode, type PolicyRules, type PolicySpec } from './engine.js';
export { globToRegExp, parseRule, primaryArgument, normalisePath, type Rule, type RuleKind } from './patterns.js';
export { policySchema, rulesSchema, modeSchema, type PolicyConfig } from './config.js';

/**
 * The spec of component `name` of `kind`: its `policy.agents` entry's mode (else `policy.mode`),
 * its entry's rules before the global ones in each list, and whether it caps its callees' mode
 * (agents, and any component with an entry).
 */
export function policySpecFor(policy: PolicyConfig, name: string, kind: string): PolicySpec {
  const own = policy.agents[name];
  const rules = own
    ? { deny: [...own.rules.deny, ...policy.rules.deny], ask: [...own.rules.ask, ...policy.rules.ask], allow: [...own.rules.allow, ...policy.rules.allow] }
    : { deny: [...policy.rules.deny], ask: [...policy.rules.ask], allow: [...policy.rules.allow] };
  return { mode: own?.mode ?? policy.mode, rules, caps: kind === 'agent' || own !== undefined, approvalTimeoutMs: policy.approvalTimeoutMs };
}

/** Compiled policies per component, for decisions made on the main thread. */
export class Policies {
  private readonly cache = new Map<string, Policy>();

  /** @param kindOf the kind of a loaded component (`tool`, `agent`, …), undefined when unknown */
  constructor(readonly config: PolicyConfig, private readonly kindOf: (name: string) => string | undefined) {}

  /** The policy of component `name` (compiled once). */
  of(name: string): Policy {
    let policy = this.cache.get(name);
    if (!policy) {
      policy = new Policy(policySpecFor(this.config, name, this.kindOf(name) ?? 'tool'));
      this.cache.set(name, policy);
    }
    return policy;
  }
}
