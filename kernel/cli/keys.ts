/** `warden keys …` commands. */
import type { Command } from 'commander';

/** Add the `keys` commands to `program`. */
export function registerKeysCommands(_program: Command): void {}
