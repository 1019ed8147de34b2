/**
 * The `policy` section of the config (zod, strict): the mode, the rules, per-agent overrides.
 * Every rule is parsed at load, so a bad pattern is reported with its field path
 * (`policy.rules.deny.0: "write-file(": …`) before the kernel starts.
 */
import { z } from 'zod';
import { POLICY_MODES } from './engine.js';
import { parseRule } from './patterns.js';

/** One of {@link POLICY_MODES}. */
export const modeSchema = z.enum(POLICY_MODES);

const ruleList = z.array(z.string()).superRefine((rules, ctx) => {
  rules.forEach((rule, i) => {
    try {
      parseRule(rule);
    } catch (err) {
      ctx.addIssue({ code: 'custom', path: [i], message: `${JSON.stringify(rule)}: ${(err as Error).message}` });
    }
  });
});

/** `{deny, ask, allow}`, each a list of rules (absent: none). */
export const rulesSchema = z
  .object({ deny: ruleList.default([]), ask: ruleList.default([]), allow: ruleList.default([]) })
  .strict();

const agentSchema = z
  .object({
    /** The agent's own mode (may be above or below `policy.mode`; never above its caller's). */
    mode: modeSchema.optional(),
    /** Tried before the global rules of the same list. */
    rules: rulesSchema.prefault({}),
  })
  .strict();

/**
 * `policy`: `mode` (default `default`), `rules` (`deny`/`ask`/`allow` lists), `agents`
 * (component name → `{mode?, rules?}`) and `approvalTimeoutMs`.
 */
export const policySchema = z
  .object({
    mode: modeSchema.default('default'),
    rules: rulesSchema.prefault({}),
    agents: z.record(z.string().regex(/^[a-z][a-z0-9-]*$/, 'a component name'), agentSchema).default({}),
    /**
     * How long an approval waits for a person, ms (default 10 min), bounded by the asking call's
     * own deadline (the agent's remaining time). The tool's time limit starts after the decision.
     */
    approvalTimeoutMs: z.number().int().min(100).max(86_400_000).default(600_000),
  })
  .strict();

/** The validated `policy` section. */
export type PolicyConfig = z.infer<typeof policySchema>;
