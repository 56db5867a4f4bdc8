// @vitest-environment happy-dom
import { beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Route } from './router';

type Router = typeof import('./router');

const runID = '7d3c1f0e-0000-4000-8000-000000000001';

// load imports the router afresh (parse reads location only).
async function load(): Promise<Router> {
  vi.resetModules();
  return import('./router');
}

function at(path: string): void {
  history.replaceState(null, '', path);
}

const route = (r: Route) => ({ name: r.name, params: r.params, query: r.query.toString() });

beforeEach(() => at('/'));

describe('parse', () => {
  const cases: Array<{ path: string; name: string; params?: Record<string, string>; query?: string }> = [
    { path: '/', name: 'dashboard' },
    { path: '/login', name: 'login' },
    { path: '/platforms', name: 'platforms' },
    { path: '/platforms?q=web&page=2', name: 'platforms', query: 'q=web&page=2' },
    { path: '/keys', name: 'keys' },
    { path: '/runs', name: 'runs' },
    { path: '/runs/new', name: 'composer' },
    { path: '/runs/new?rerun=' + runID, name: 'composer', query: 'rerun=' + runID },
    { path: '/runs/' + runID, name: 'run', params: { id: runID } },
    { path: '/runs/' + runID.toUpperCase(), name: 'run', params: { id: runID.toUpperCase() } },
    { path: '/runs/' + runID + '/', name: 'run', params: { id: runID } },
    { path: '/audit', name: 'audit' },
    { path: '/users/', name: 'users' },
    { path: '/platforms//', name: 'platforms' },
    { path: '/runs/not-a-uuid', name: 'notfound' },
    { path: '/runs/' + runID + '/logs', name: 'notfound' },
    { path: '/Platforms', name: 'notfound' },
    { path: '/nowhere?x=1', name: 'notfound', query: 'x=1' },
  ];
  for (const c of cases) {
    it(c.path, async () => {
      const { parse } = await load();
      at(c.path);
      expect(route(parse())).toEqual({ name: c.name, params: c.params ?? {}, query: c.query ?? '' });
    });
  }
});

describe('pages', () => {
  it('every route but login has a page, and notfound none', async () => {
    const { routeNames } = await load();
    const { pages } = await import('./pages');
    expect(routeNames.filter((n) => n !== 'login').sort()).toEqual(Object.keys(pages).sort());
    expect(pages.notfound).toBeUndefined();
  });
});

// start listens on the document for good, so one router is started for all
// of these, as main.ts does.
describe('navigation', () => {
  let router: Router;
  const seen: string[] = [];
  let initial: string[] = [];
  beforeAll(async () => {
    router = await load();
    at('/runs/' + runID);
    router.start((r) => seen.push(r.name));
    initial = [...seen];
  });
  beforeEach(() => {
    seen.length = 0;
  });

  it('start shows the current route', () => {
    expect(initial).toEqual(['run']);
  });

  it('navigate pushes a history entry, or replaces the current one', () => {
    const before = history.length;
    router.navigate('/runs');
    expect(location.pathname).toBe('/runs');
    expect(history.length).toBe(before + 1);
    router.navigate('/audit?actor=alice', true);
    expect(location.pathname + location.search).toBe('/audit?actor=alice');
    expect(history.length).toBe(before + 1);
    expect(seen).toEqual(['runs', 'audit']);
  });

  it('back and forward show the route again', () => {
    at('/keys');
    window.dispatchEvent(new PopStateEvent('popstate'));
    expect(seen).toEqual(['keys']);
  });

  it('follows a plain click on an in-app link, not a modified one or another link', () => {
    document.body.innerHTML = `<a id="in" href="/runs/${runID}" data-link><span id="inner">run</span></a><a id="out" href="/api/runs">json</a>`;
    const click = (id: string, init: MouseEventInit = {}) => {
      const ev = new MouseEvent('click', { bubbles: true, cancelable: true, button: 0, ...init });
      document.getElementById(id)!.dispatchEvent(ev);
      return ev.defaultPrevented;
    };
    expect(click('inner')).toBe(true);
    expect(location.pathname).toBe('/runs/' + runID);
    expect(seen).toEqual(['run']);
    // The router leaves these to the browser; keep happy-dom from
    // following them in the test document.
    const stay = (ev: Event) => ev.preventDefault();
    window.addEventListener('click', stay);
    click('in', { ctrlKey: true });
    click('in', { metaKey: true });
    click('in', { shiftKey: true });
    click('in', { button: 1 });
    click('out');
    window.removeEventListener('click', stay);
    expect(seen).toEqual(['run']);
    document.body.innerHTML = '';
  });
});
