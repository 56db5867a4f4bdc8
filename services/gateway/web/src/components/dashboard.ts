// The dashboard: recent runs, platforms by state, executors online.
import { h, fmtTime, setText } from '../dom';
import { api } from '../api';
import { can } from '../session';
import { errorBox } from './notice';
import { stateBadge } from './state-badge';
import type { Page } from './page';

const platformStates = ['reachable', 'unknown', 'unreachable', 'auth_failed', 'hostkey_rejected'];

export function dashboardPage(): Page {
  const err = errorBox();
  const runsBody = h('tbody', { id: 'dash-runs' });
  const states = h('div', { class: 'tiles', id: 'dash-platform-states' });
  const executors = h('tbody', { id: 'dash-executors' });
  const execCount = h('span', { class: 'count', id: 'dash-executor-count' }, '…');
  const el = h('section', { class: 'page', id: 'page-dashboard' },
    h('div', { class: 'page-head' }, h('h1', { t: 'nav.dashboard' }),
      can('run.create') ? h('a', { href: '/runs/new', 'data-link': true, class: 'button primary', t: 'nav.new_run' }) : null,
      h('button', { type: 'button', id: 'dash-refresh', t: 'common.refresh', on: { click: () => void load() } })),
    err.el,
    h('div', { class: 'grid-2' },
      h('div', { class: 'card' }, h('h2', { t: 'dash.platforms' }), states),
      h('div', { class: 'card' }, h('h2', null, h('span', { t: 'dash.executors' }), ' ', execCount),
        h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', { t: 'dash.executor' }), h('th', { t: 'dash.host' }), h('th', { t: 'dash.slots' }), h('th', { t: 'dash.heartbeat' }))), executors))),
    h('div', { class: 'card' }, h('h2', { t: 'dash.recent_runs' }),
      h('table', { class: 'table' },
        h('thead', null, h('tr', null, h('th', { t: 'runs.state' }), h('th', { t: 'runs.command' }), h('th', { t: 'runs.hosts' }), h('th', { t: 'runs.by' }), h('th', { t: 'runs.created' }))),
        runsBody)));

  async function load(): Promise<void> {
    err.hide();
    try {
      const [runs, total, ...byState] = await Promise.all([
        api.runs({ limit: 10 }),
        api.platforms({ limit: 1 }),
        ...platformStates.map((s) => api.platforms({ state: s, limit: 1 })),
      ]);
      runsBody.replaceChildren(...runs.items.map((r) =>
        h('tr', null, h('td', null, stateBadge(r.state)),
          h('td', null, h('a', { href: '/runs/' + r.id, 'data-link': true, class: 'mono' }, r.command)),
          h('td', null, r.host_count), h('td', null, r.created_by), h('td', null, fmtTime(r.created_at)))));
      if (runs.items.length === 0) runsBody.replaceChildren(h('tr', null, h('td', { colspan: 5, class: 'muted', t: 'common.none' })));
      states.replaceChildren(
        h('a', { class: 'tile', href: '/platforms', 'data-link': true }, h('strong', { 'data-count': 'all' }, total.total), h('span', { t: 'dash.all_platforms' })),
        ...platformStates.map((s, i) => h('a', { class: 'tile', href: '/platforms?state=' + s, 'data-link': true },
          h('strong', { 'data-count': s }, byState[i].total), stateBadge(s))));
    } catch (e) {
      err.show(e);
    }
    try {
      const ex = await api.executors();
      execCount.textContent = String(ex.total);
      executors.replaceChildren(...ex.items.map((x) => h('tr', null, h('td', { class: 'mono' }, x.id), h('td', null, x.hostname + ' (pid ' + x.pid + ')'), h('td', null, x.slots), h('td', null, fmtTime(x.heartbeat_at)))));
      if (ex.items.length === 0) {
        const td = h('td', { colspan: 4, class: 'muted' });
        setText(td, 'dash.no_executors');
        executors.replaceChildren(h('tr', null, td));
      }
    } catch (e) {
      err.show(e);
    }
  }
  void load();
  return { el };
}
