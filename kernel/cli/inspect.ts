/** `warden inspect` commands (component developer kit). */
import type { Command } from 'commander';

/** Add the commands to `program`. */
export function registerInspectCommands(_program: Command): void {}
