/**
 * `warden approve ID` and `warden approvals` (to be written: issue 8).
 */
import type { Command } from 'commander';

export function registerApprovalCommands(_program: Command): void {}
