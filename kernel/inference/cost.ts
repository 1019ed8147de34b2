/** Cost of an answer from the serving backend's configured prices (US dollars per million tokens). */
import type { ModelPrice, Prices } from './types.js';

/** The price of `model` in `prices`: its own entry, else the `"*"` entry, else none. */
export function priceOf(prices: Prices | undefined, model: string): ModelPrice | undefined {
  return prices?.[model] ?? prices?.['*'];
}

/**
 * Cost in US dollars of `promptTokens` in and `completionTokens` out at `price` (0 without a
 * price), rounded to 1e-9 so sums stay readable.
 */
export function costUsd(price: ModelPrice | undefined, promptTokens: number, completionTokens: number): number {
  if (!price) return 0;
  const usd = (promptTokens * price.inputPerMTok + completionTokens * price.outputPerMTok) / 1_000_000;
  return Math.round(usd * 1e9) / 1e9;
}
