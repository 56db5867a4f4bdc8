// Platforms: filter by labels, name and state, paginate; add, edit, test
// the connection, see and accept host keys, deploy keys, delete, import.
import { h, field, option, fmtTime, setText } from '../dom';
import { api, type Platform } from '../api';
import { can } from '../session';
import type { Route } from '../router';
import { errorBox, notify } from './notice';
import { pager } from './pager';
import { stateBadge, setBadge } from './state-badge';
import { platformForm, labelsText } from './platform-form';
import { importDialog } from './import-dialog';
import { hostKeyDialog } from './host-key-dialog';
import { deployDialog } from './deploy-dialog';
import { confirmDialog } from './dialog';
import type { Page } from './page';
import type { Key } from '../i18n';

export function platformsPage(r: Route): Page {
  const label = h('input', { id: 'pl-filter-label', class: 'mono', ph: 'pf.labels_placeholder', value: r.query.get('label') ?? '' });
  const name = h('input', { id: 'pl-filter-name', ph: 'pl.name_filter', value: r.query.get('name') ?? '' });
  const state = h('select', { id: 'pl-filter-state' }, option('', 'pl.any_state'),
    ...['unknown', 'reachable', 'unreachable', 'auth_failed', 'hostkey_rejected'].map((s) => option(s, `state.${s}` as Key)));
  state.value = r.query.get('state') ?? '';
  const err = errorBox();
  const body = h('tbody', { id: 'platform-rows' });
  const pg = pager(50, () => void load());
  const filters = h('form', { class: 'filters', id: 'platform-filters' }, field('pf.labels', label), field('pf.name', name), field('pl.state', state),
    h('button', { type: 'submit', t: 'common.filter' }));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    pg.offset = 0;
    void load();
  });
  state.addEventListener('change', () => {
    pg.offset = 0;
    void load();
  });

  const el = h('section', { class: 'page', id: 'page-platforms' },
    h('div', { class: 'page-head' }, h('h1', { t: 'nav.platforms' }),
      can('platform.create') ? h('button', { type: 'button', class: 'primary', id: 'platform-add', t: 'pf.add', on: { click: () => platformForm(null, (p) => { notify('pf.added', { name: p.name }); void load(); }) } }) : null,
      can('platform.create') ? h('button', { type: 'button', id: 'platform-import', t: 'imp.title', on: { click: () => importDialog(() => void load()) } }) : null),
    filters, err.el,
    h('table', { class: 'table' },
      h('thead', null, h('tr', null, h('th', { t: 'pf.name' }), h('th', { t: 'pf.address' }), h('th', { t: 'pf.username' }), h('th', { t: 'pf.labels' }),
        h('th', { t: 'pl.state' }), h('th', { t: 'pl.last_contact' }), h('th', { t: 'common.actions' }))),
      body),
    pg.el);

  function row(p: Platform): HTMLElement {
    const badge = stateBadge(p.state);
    const result = h('div', { class: 'test-result muted', 'data-test-result': p.name });
    const actions = h('td', { class: 'actions' });
    if (can('platform.run')) actions.append(h('button', { type: 'button', 'data-test': p.name, t: 'pl.test', on: { click: async (ev) => {
      const b = ev.currentTarget as HTMLButtonElement;
      b.disabled = true;
      setText(result, 'pl.testing');
      try {
        const t = await api.platformTest(p.id);
        setBadge(badge, t.ok ? 'reachable' : t.state);
        delete result.dataset.i18n;
        result.textContent = t.message + (t.host_key_fingerprint ? ' · ' + t.host_key_fingerprint : '');
        if (t.state === 'hostkey_rejected' && can('platform.host_key')) void hostKeyDialog(p.id, p.name, () => void load());
      } catch (e) {
        delete result.dataset.i18n;
        result.textContent = String(e instanceof Error ? e.message : e);
      } finally {
        b.disabled = false;
      }
    } } }));
    actions.append(h('button', { type: 'button', 'data-hostkey': p.name, t: 'pl.host_key', on: { click: () => void hostKeyDialog(p.id, p.name, () => void load()) } }));
    if (can('platform.update')) actions.append(h('button', { type: 'button', 'data-edit': p.name, t: 'common.edit', on: { click: () => platformForm(p, () => void load()) } }));
    if (can('key.deploy')) actions.append(h('button', { type: 'button', 'data-deploy': p.name, t: 'pl.keys', on: { click: () => void deployDialog(p.id, p.name) } }));
    if (can('platform.delete')) actions.append(h('button', { type: 'button', class: 'danger', 'data-delete': p.name, t: 'common.delete', on: { click: async () => {
      if (!(await confirmDialog('pl.confirm_delete', { name: p.name }))) return;
      try {
        await api.platformDelete(p.id);
        void load();
      } catch (e) {
        err.show(e);
      }
    } } }));
    return h('tr', { 'data-platform': p.name },
      h('td', null, h('strong', null, p.name)), h('td', { class: 'mono' }, `${p.host}:${p.port}`), h('td', null, p.username),
      h('td', { class: 'mono' }, labelsText(p.labels)), h('td', null, badge, result), h('td', null, fmtTime(p.last_contact_at)), actions);
  }

  async function load(): Promise<void> {
    err.hide();
    try {
      const res = await api.platforms({ label: label.value.trim(), name: name.value.trim(), state: state.value, limit: pg.limit, offset: pg.offset });
      body.replaceChildren(...res.items.map(row));
      if (res.items.length === 0) body.replaceChildren(h('tr', null, h('td', { colspan: 7, class: 'muted', t: 'common.none' })));
      pg.update(res.total, res.items.length);
    } catch (e) {
      err.show(e);
    }
  }
  void load();
  return { el };
}
