// Input parsing for tools: the model's JSON arguments, checked field by field.
import { invalid } from './fs.js';

/** Parse the tool input as a JSON object. */
export function parseInput(input: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(input);
  } catch {
    throw invalid('input is not valid JSON');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw invalid('input must be a JSON object');
  return value as Record<string, unknown>;
}

export function str(input: Record<string, unknown>, key: string): string;
export function str(input: Record<string, unknown>, key: string, optional: true): string | undefined;
export function str(input: Record<string, unknown>, key: string, optional = false): string | undefined {
  const v = input[key];
  if (v === undefined || v === null) {
    if (optional) return undefined;
    throw invalid(`missing required field "${key}"`);
  }
  if (typeof v !== 'string') throw invalid(`field "${key}" must be a string`);
  return v;
}

export function int(input: Record<string, unknown>, key: string): number | undefined {
  const v = input[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw invalid(`field "${key}" must be a positive integer`);
  return v;
}

export function bool(input: Record<string, unknown>, key: string): boolean {
  const v = input[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalid(`field "${key}" must be a boolean`);
  return v;
}
