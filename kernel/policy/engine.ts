/**
 * The policy decision: rules `deny` → `ask` → `allow` (first match within each list), then the
 * mode's default. Built once per component from its {@link PolicySpec} (every pattern compiled
 * to a RegExp then), so a decision costs a few string and RegExp tests.
 */
import { nameMatches, normalisePath, parseRule, primaryArgument, type Rule, type RuleKind } from './patterns.js';

/** Permission modes, lowest first. */
export const POLICY_MODES = ['default', 'acceptEdits', 'bypassPermissions'] as const;

/**
 * `default`: reads are allowed, writes ask. `acceptEdits`: writes to the session (tools with a
 * read-write filesystem grant) are allowed too; commits and outbound hosts still ask.
 * `bypassPermissions`: everything is allowed that no `deny` rule refuses.
 */
export type PolicyMode = (typeof POLICY_MODES)[number];

/** The lower of two modes (`default` < `acceptEdits` < `bypassPermissions`). */
export function minMode(a: PolicyMode, b: PolicyMode): PolicyMode {
  return POLICY_MODES.indexOf(a) <= POLICY_MODES.indexOf(b) ? a : b;
}

/** Rules as written in the config: each list is tried in order, `deny` first, then `ask`, then `allow`. */
export interface PolicyRules {
  deny: string[];
  ask: string[];
  allow: string[];
}

/**
 * What one component's worker (or the main thread, for commits and outbound hosts) decides
 * with: plain data, so it crosses to a worker in `WorkerInit`.
 */
export interface PolicySpec {
  /** The component's own mode: its `policy.agents` entry's, else `policy.mode`. */
  mode: PolicyMode;
  /** Its `policy.agents` rules before the global ones, list by list. */
  rules: PolicyRules;
  /**
   * Whether the component caps the mode of the calls it makes at its own effective mode: true
   * for agents and for any component with its own `policy.agents` entry; the supervisor and
   * tools without one pass on the cap they were called with.
   */
  caps: boolean;
  /** How long an approval may wait for a decision, ms (`policy.approvalTimeoutMs`); the asking call's deadline bounds it too. */
  approvalTimeoutMs: number;
}

/** An action to decide on. */
export type PolicyAction =
  /**
   * A tool call: `input` is its JSON; `write` says why it is a write (`fs`: its effective
   * filesystem grant is read-write; `http`: it has outbound http), or false for a read.
   */
  | { kind: 'tool'; name: string; input: string; write: 'fs' | 'http' | false }
  /** A call to an agent or supervisor (a read). */
  | { kind: 'mesh'; name: string }
  /** A session commit with the paths it changes (a write). */
  | { kind: 'commit'; session: string; paths: string[] }
  /** An outbound request to a host (normalised, lower case; a write). */
  | { kind: 'http'; host: string };

/** A decision with what it was about and why. */
export interface PolicyDecision {
  decision: 'allow' | 'deny' | 'ask';
  /** The action in rule syntax: `write-file(src/a.ts)`, `grep(foo)`, `mesh:coder`, `commit(s-…)`, `http(api.example.com)`. */
  subject: string;
  /** The rule that decided, `deny: write-file(.git/**)`, or `mode default` when none matched. */
  rule: string;
  /** The mode the decision was made under. */
  mode: PolicyMode;
}

type ListName = keyof PolicyRules;
const LISTS: ListName[] = ['deny', 'ask', 'allow'];

/**
 * Parse every rule of `rules`.
 * @throws Error naming the first bad rule (`deny[0] "write-file(": …`)
 */
export function compileRules(rules: PolicyRules): Record<ListName, Rule[]> {
  const out = { deny: [] as Rule[], ask: [] as Rule[], allow: [] as Rule[] };
  for (const list of LISTS) {
    rules[list].forEach((text, i) => {
      try {
        out[list].push(parseRule(text));
      } catch (err) {
        throw new Error(`${list}[${i}] ${JSON.stringify(text)}: ${(err as Error).message}`);
      }
    });
  }
  return out;
}

/** One component's compiled policy. */
export class Policy {
  private readonly byKind: Record<RuleKind, Record<ListName, Rule[]>>;

  /** @throws Error naming a bad rule (specs from a validated config never throw) */
  constructor(readonly spec: PolicySpec) {
    const compiled = compileRules(spec.rules);
    const empty = (): Record<ListName, Rule[]> => ({ deny: [], ask: [], allow: [] });
    this.byKind = { tool: empty(), mesh: empty(), commit: empty(), http: empty() };
    for (const list of LISTS) for (const rule of compiled[list]) this.byKind[rule.kind][list].push(rule);
  }

  /**
   * The mode a call acts under, and the cap it passes on to its own callees, given the cap
   * its caller passed (absent: no cap).
   */
  modesFor(cap: PolicyMode | undefined): { acting: PolicyMode; passOn: PolicyMode } {
    const acting = cap ? minMode(cap, this.spec.mode) : this.spec.mode;
    return { acting, passOn: this.spec.caps ? acting : cap ?? 'bypassPermissions' };
  }

  /** Decide on `action` under `mode`. */
  decide(action: PolicyAction, mode: PolicyMode): PolicyDecision {
    const rules = this.byKind[action.kind];
    let subject: string;
    let matches: (rule: Rule, list: ListName) => boolean;
    switch (action.kind) {
      case 'tool': {
        const arg = primaryArgument(action.input);
        subject = arg === undefined ? action.name : `${action.name}(${arg})`;
        matches = (rule) => nameMatches(rule.name!, action.name) && (rule.arg === null || (arg !== undefined && rule.arg.test(arg)));
        break;
      }
      case 'mesh':
        subject = `mesh:${action.name}`;
        matches = (rule) => nameMatches(rule.name!, action.name);
        break;
      case 'commit': {
        subject = `commit(${action.session})`;
        const paths = action.paths.map(normalisePath);
        // deny and ask: when any changed path matches; allow: only when every one does.
        matches = (rule, list) => {
          if (rule.arg === null) return true;
          const test = (p: string) => rule.arg!.test(p);
          return list === 'allow' ? paths.length > 0 && paths.every(test) : paths.some(test);
        };
        break;
      }
      case 'http':
        subject = `http(${action.host})`;
        matches = (rule) => rule.arg === null || rule.arg.test(action.host);
        break;
    }
    for (const list of LISTS) {
      for (const rule of rules[list]) {
        if (matches(rule, list)) return { decision: list, subject, rule: `${list}: ${rule.text}`, mode };
      }
    }
    return { decision: modeDefault(action, mode), subject, rule: `mode ${mode}`, mode };
  }
}

/** What a mode decides when no rule matched (modes never deny). */
function modeDefault(action: PolicyAction, mode: PolicyMode): 'allow' | 'ask' {
  if (mode === 'bypassPermissions') return 'allow';
  switch (action.kind) {
    case 'mesh':
      return 'allow';
    case 'tool':
      if (action.write === false) return 'allow';
      return action.write === 'fs' && mode === 'acceptEdits' ? 'allow' : 'ask';
    case 'commit':
    case 'http':
      return 'ask';
  }
}
