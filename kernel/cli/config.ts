/** `warden config …` commands. */
import type { Command } from 'commander';

/** Add the `config` commands to `program`. */
export function registerConfigCommands(_program: Command): void {}
