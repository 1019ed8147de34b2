/** Small building blocks: status badges and table cells that turn into card rows on a phone. */
import type { ComponentChildren } from 'preact';

/**
 * A status badge; `tone` picks the colour (defaults to `status` itself, which the stylesheet maps:
 * running/streaming blue, succeeded/ok/approved green, failed/error/denied red, interrupted/pending amber).
 */
export function Badge(props: { status: string; tone?: string; id?: string; children?: ComponentChildren }) {
  return (
    <span id={props.id} class={`badge tone-${props.tone ?? props.status}`} data-status={props.status}>
      {props.children ?? props.status}
    </span>
  );
}

/**
 * A table cell that becomes a labelled row of a card at phone width (the stylesheet shows
 * `label` before the content, which is wrapped so it stays in one grid column).
 */
export function Cell(props: { label: string; class?: string; title?: string; children?: ComponentChildren }) {
  return (
    <td data-label={props.label} class={props.class} title={props.title}>
      <div class="cell">{props.children}</div>
    </td>
  );
}
