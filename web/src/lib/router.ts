/**
 * Client-side routing over the History API: `/` (task list), `/tasks/:id` (task page),
 * `/components`. The kernel answers these paths with index.html (its SPA fallback), so a reload
 * or a pasted link lands on the same page.
 */
import type { AnchorHTMLAttributes } from 'preact';
import { createStore, useStore } from './store.ts';

/** A matched route. */
export type Route = { page: 'tasks' } | { page: 'task'; id: string } | { page: 'components' } | { page: 'not-found'; path: string };

const location$ = createStore(window.location.pathname);
window.addEventListener('popstate', () => location$.set(window.location.pathname));

/** The route for a path. Task ids are `t-` and 8 hex digits, as the kernel makes them. */
export function match(path: string): Route {
  if (path === '/' || path === '/tasks' || path === '/tasks/') return { page: 'tasks' };
  if (path === '/components' || path === '/components/') return { page: 'components' };
  const task = /^\/tasks\/(t-[0-9a-f]{8})\/?$/.exec(path);
  if (task) return { page: 'task', id: task[1]! };
  return { page: 'not-found', path };
}

/** The current route; re-renders on navigation. */
export function useRoute(): Route {
  return match(useStore(location$));
}

/** Go to `path` without a reload (pushState), scrolled to the top. */
export function navigate(path: string): void {
  if (path === window.location.pathname) return;
  window.history.pushState(null, '', path);
  location$.set(path);
  window.scrollTo(0, 0);
}

/**
 * Props for an `<a>` that navigates client-side on a plain left click (a modified click, such as
 * ctrl-click for a new tab, keeps the browser's behaviour).
 */
export function linkProps(path: string): Pick<AnchorHTMLAttributes<HTMLAnchorElement>, 'href' | 'onClick'> {
  return {
    href: path,
    onClick: (event: MouseEvent) => {
      if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      navigate(path);
    },
  };
}
