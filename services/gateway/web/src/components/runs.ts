// Run history with filters (state, user, platform, labels, text, time).
import { h, field, option, fmtTime } from '../dom';
import { api } from '../api';
import type { Route } from '../router';
import { errorBox } from './notice';
import { pager } from './pager';
import { stateBadge } from './state-badge';
import type { Page } from './page';
import type { Key } from '../i18n';

const runStates = ['queued', 'running', 'succeeded', 'failed', 'canceled', 'aborted'];

// rfc3339 turns a datetime-local value into an RFC 3339 time.
export function rfc3339(v: string): string {
  if (!v) return '';
  const d = new Date(v);
  return isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function runsPage(r: Route): Page {
  const state = h('select', { id: 'rh-state' }, option('', 'pl.any_state'), ...runStates.map((s) => option(s, `state.${s}` as Key)));
  state.value = r.query.get('state') ?? '';
  const user = h('input', { id: 'rh-user', value: r.query.get('user') ?? '' });
  const q = h('input', { id: 'rh-q', ph: 'rh.q_placeholder', value: r.query.get('q') ?? '' });
  const label = h('input', { id: 'rh-label', class: 'mono', ph: 'pf.labels_placeholder' });
  const platform = h('select', { id: 'rh-platform' }, option('', 'rh.any_platform'));
  const since = h('input', { id: 'rh-since', type: 'datetime-local' });
  const until = h('input', { id: 'rh-until', type: 'datetime-local' });
  const err = errorBox();
  const body = h('tbody', { id: 'run-rows' });
  const pg = pager(50, () => void load());
  const filters = h('form', { class: 'filters', id: 'run-filters' },
    field('runs.state', state), field('runs.by', user), field('rh.q', q), field('pf.labels', label), field('rh.platform', platform),
    field('rh.since', since), field('rh.until', until), h('button', { type: 'submit', t: 'common.filter' }));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    pg.offset = 0;
    void load();
  });
  state.addEventListener('change', () => {
    pg.offset = 0;
    void load();
  });
  void api.platforms({ limit: 1000 }).then((ps) => {
    for (const p of ps.items) platform.appendChild(option(String(p.id), null, p.name));
  }).catch(() => {});

  async function load(): Promise<void> {
    err.hide();
    try {
      const res = await api.runs({ state: state.value, user: user.value.trim(), q: q.value.trim(), label: label.value.trim(), platform: platform.value,
        since: rfc3339(since.value), until: rfc3339(until.value), limit: pg.limit, offset: pg.offset });
      body.replaceChildren(...res.items.map((run) => h('tr', { 'data-run-row': run.id },
        h('td', null, stateBadge(run.state)),
        h('td', null, h('a', { href: '/runs/' + run.id, 'data-link': true, class: 'mono' }, run.command)),
        h('td', null, run.host_count), h('td', null, run.created_by), h('td', null, fmtTime(run.created_at)), h('td', null, fmtTime(run.finished_at)))));
      if (res.items.length === 0) body.replaceChildren(h('tr', null, h('td', { colspan: 6, class: 'muted', t: 'common.none' })));
      pg.update(res.total, res.items.length);
    } catch (e) {
      err.show(e);
    }
  }
  void load();
  const el = h('section', { class: 'page', id: 'page-runs' }, h('div', { class: 'page-head' }, h('h1', { t: 'nav.runs' })), filters, err.el,
    h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', { t: 'runs.state' }), h('th', { t: 'runs.command' }), h('th', { t: 'runs.hosts' }),
      h('th', { t: 'runs.by' }), h('th', { t: 'runs.created' }), h('th', { t: 'runs.finished' }))), body), pg.el);
  return { el };
}
