// The audit log (extended_admin and up): every change, login and refusal.
import { h, field, fmtTime } from '../dom';
import { api } from '../api';
import { errorBox } from './notice';
import { pager } from './pager';
import { stateBadge } from './state-badge';
import { rfc3339 } from './runs';
import type { Page } from './page';

export function auditPage(): Page {
  const actor = h('input', { id: 'au-actor' });
  const action = h('input', { id: 'au-action', ph: 'au.action_placeholder' });
  const target = h('input', { id: 'au-target' });
  const since = h('input', { id: 'au-since', type: 'datetime-local' });
  const until = h('input', { id: 'au-until', type: 'datetime-local' });
  const err = errorBox();
  const body = h('tbody', { id: 'audit-rows' });
  const pg = pager(100, () => void load());
  const filters = h('form', { class: 'filters', id: 'audit-filters' }, field('au.actor', actor), field('au.action', action), field('au.target', target),
    field('rh.since', since), field('rh.until', until), h('button', { type: 'submit', t: 'common.filter' }));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    pg.offset = 0;
    void load();
  });
  async function load(): Promise<void> {
    err.hide();
    try {
      const res = await api.audit({ actor: actor.value.trim(), action: action.value.trim(), target: target.value.trim(), since: rfc3339(since.value), until: rfc3339(until.value), limit: pg.limit, offset: pg.offset });
      body.replaceChildren(...res.items.map((a) => h('tr', null, h('td', null, fmtTime(a.at)), h('td', null, a.actor || '—'), h('td', { class: 'mono' }, a.action),
        h('td', { class: 'mono' }, a.target), h('td', null, stateBadge(a.outcome)), h('td', { class: 'mono small wrap' }, a.details ? JSON.stringify(a.details) : ''), h('td', { class: 'mono' }, a.ip))));
      if (res.items.length === 0) body.replaceChildren(h('tr', null, h('td', { colspan: 7, class: 'muted', t: 'common.none' })));
      pg.update(res.total, res.items.length);
    } catch (e) {
      err.show(e);
    }
  }
  void load();
  const el = h('section', { class: 'page', id: 'page-audit' }, h('div', { class: 'page-head' }, h('h1', { t: 'nav.audit' })), filters, err.el,
    h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', { t: 'au.time' }), h('th', { t: 'au.actor' }), h('th', { t: 'au.action' }), h('th', { t: 'au.target' }),
      h('th', { t: 'au.outcome' }), h('th', { t: 'au.details' }), h('th', { t: 'au.ip' }))), body), pg.el);
  return { el };
}
