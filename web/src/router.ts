// History API router. Views are rendered into one container; the softphone
// lives outside it, so navigating never tears down a call.

export interface View {
  /** Renders into `root`; the returned function (if any) runs when the view is left. */
  render(root: HTMLElement): void | (() => void);
}

type Resolver = (path: string) => View;

let resolver: Resolver | null = null;
let root: HTMLElement | null = null;
let cleanup: (() => void) | null = null;
const listeners = new Set<(path: string) => void>();

export function currentPath(): string {
  return window.location.pathname;
}

export function startRouter(container: HTMLElement, resolve: Resolver): void {
  root = container;
  resolver = resolve;
  window.addEventListener('popstate', () => renderCurrent());
  // Same-origin links marked data-link navigate without a page load.
  document.addEventListener('click', (ev) => {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const a = (ev.target as Element | null)?.closest?.('a[data-link]') as HTMLAnchorElement | null;
    if (!a) return;
    ev.preventDefault();
    navigate(a.getAttribute('href') ?? '/');
  });
  renderCurrent();
}

export function navigate(path: string, replace = false): void {
  if (path === currentPath() + window.location.search && !replace) {
    renderCurrent();
    return;
  }
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  renderCurrent();
}

export function rerender(): void {
  renderCurrent();
}

export function onNavigate(fn: (path: string) => void): void {
  listeners.add(fn);
}

function renderCurrent(): void {
  if (!root || !resolver) return;
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.error('view cleanup failed', err);
    }
    cleanup = null;
  }
  const path = currentPath();
  const view = resolver(path);
  root.replaceChildren();
  const result = view.render(root);
  if (typeof result === 'function') cleanup = result;
  for (const fn of listeners) fn(path);
  // Move focus to the new page's heading for screen-reader users.
  const heading = root.querySelector('h1');
  if (heading instanceof HTMLElement && !root.contains(document.activeElement)) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}
