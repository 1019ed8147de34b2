/** `warden audit …` commands. */
import type { Command } from 'commander';

/** Add the `audit` commands to `program`. */
export function registerAuditCommands(_program: Command): void {}
