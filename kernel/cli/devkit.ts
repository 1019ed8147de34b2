/** `warden devkit` commands (component developer kit). */
import type { Command } from 'commander';

/** Add the commands to `program`. */
export function registerDevkitCommands(_program: Command): void {}
