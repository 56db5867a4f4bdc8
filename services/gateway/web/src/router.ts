// History-API routing: the gateway answers every console path with
// index.html, so deep links (/runs/…) work.
export interface Route {
  name: string;
  params: Record<string, string>;
  query: URLSearchParams;
}

const patterns: Array<[string, RegExp]> = [
  ['login', /^\/login$/],
  ['dashboard', /^\/$/],
  ['platforms', /^\/platforms$/],
  ['keys', /^\/keys$/],
  ['composer', /^\/runs\/new$/],
  ['run', /^\/runs\/(?<id>[0-9a-fA-F-]{36})$/],
  ['runs', /^\/runs$/],
  ['audit', /^\/audit$/],
  ['users', /^\/users$/],
];

// routeNames are the names parse gives besides notfound.
export const routeNames = patterns.map(([name]) => name);

let onChange: (r: Route) => void = () => {};

export function parse(): Route {
  const path = location.pathname.replace(/\/+$/, '') || '/';
  for (const [name, re] of patterns) {
    const m = re.exec(path);
    if (m) return { name, params: { ...(m.groups ?? {}) }, query: new URLSearchParams(location.search) };
  }
  return { name: 'notfound', params: {}, query: new URLSearchParams(location.search) };
}

export function start(fn: (r: Route) => void): void {
  onChange = fn;
  window.addEventListener('popstate', () => onChange(parse()));
  document.addEventListener('click', (ev) => {
    const a = (ev.target as Element | null)?.closest?.('a[data-link]') as HTMLAnchorElement | null;
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    ev.preventDefault();
    navigate(a.getAttribute('href') ?? '/');
  });
  onChange(parse());
}

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  onChange(parse());
}
