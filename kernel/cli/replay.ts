/**
 * `warden run --replay TRANSCRIPT` support and `warden transcript` (to be written: issue 8).
 */
import type { Command } from 'commander';

export function registerTranscriptCommands(_program: Command): void {}
