// Task categories for routing (`inference.categories` maps a category to a model@backend).
// Simple keyword rules on the prompt, first match wins, matched on whole words, case-insensitive:
// 1. `planning`: the task asks for a plan or a design (plan, design, architect, architecture,
//    propose, proposal, outline, roadmap, strategy, approach);
// 2. `coding`: it asks for a change (add, fix, implement, write, create, change, refactor,
//    rename, update, remove, delete, edit, modify, migrate, port, convert, replace, build, make);
// 3. `exploration`: it asks a question or to look around (explain, describe, summarize,
//    summarise, find, list, show, search, investigate, explore, understand, review, what,
//    where, why, how, which, who, or a prompt ending with "?");
// 4. otherwise `coding`, the coder agent's job.

/** A task's category. */
export type Category = 'planning' | 'coding' | 'exploration';

const RULES: Array<[Category, RegExp]> = [
  ['planning', /\b(?:plan|planning|design|architect|architecture|propose|proposal|outline|roadmap|strategy|approach)\b/i],
  ['coding', /\b(?:add|fix|implement|write|create|change|refactor|rename|update|remove|delete|edit|modify|migrate|port|convert|replace|build|make)\b/i],
  ['exploration', /\b(?:explain|describe|summari[sz]e|find|list|show|search|investigate|explore|understand|review|what|where|why|how|which|who)\b|\?\s*$/i],
];

/** The category of a task's prompt (see the rules above). */
export function categorize(prompt: string): Category {
  for (const [category, rule] of RULES) if (rule.test(prompt)) return category;
  return 'coding';
}
