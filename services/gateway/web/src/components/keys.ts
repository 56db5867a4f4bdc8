// SSH keys: the public keys testum deploys, testum's own identity key, and
// (for extended_admin) the stored credentials.
import { h, field, fmtTime } from '../dom';
import { api } from '../api';
import { can } from '../session';
import { errorBox } from './notice';
import { confirmDialog } from './dialog';
import { credentialsCard } from './credentials';
import type { Page } from './page';

export function keysPage(): Page {
  const err = errorBox();
  const body = h('tbody', { id: 'key-rows' });
  const identity = h('pre', { class: 'mono wrap', id: 'identity-key' }, '…');
  const name = h('input', { id: 'key-name', required: true });
  const pub = h('textarea', { id: 'key-public', rows: 3, class: 'mono', required: true, ph: 'keys.public_placeholder' });
  const addErr = errorBox();
  const form = h('form', { class: 'form card', id: 'key-form' }, h('h2', { t: 'keys.add' }), field('keys.name', name), field('keys.public_key', pub), addErr.el,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'key-submit', t: 'keys.add' })));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    addErr.hide();
    try {
      await api.keyCreate(name.value.trim(), pub.value.trim());
      name.value = '';
      pub.value = '';
      void load();
    } catch (e) {
      addErr.show(e);
    }
  });
  const el = h('section', { class: 'page', id: 'page-keys' },
    h('div', { class: 'page-head' }, h('h1', { t: 'nav.keys' })), err.el,
    h('div', { class: 'card' }, h('h2', { t: 'keys.identity' }), h('p', { class: 'muted', t: 'keys.identity_hint' }), identity),
    h('div', { class: 'card' }, h('h2', { t: 'keys.list' }),
      h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', { t: 'keys.name' }), h('th', { t: 'keys.fingerprint' }), h('th', { t: 'runs.by' }), h('th', { t: 'runs.created' }), h('th', null))), body)),
    can('key.manage') ? form : null,
    can('credential.read') ? credentialsCard() : null);

  async function load(): Promise<void> {
    err.hide();
    try {
      const keys = await api.keys({ limit: 1000 });
      body.replaceChildren(...keys.items.map((k) => h('tr', { 'data-key': k.name }, h('td', null, k.name), h('td', { class: 'mono' }, k.fingerprint), h('td', null, k.created_by), h('td', null, fmtTime(k.created_at)),
        h('td', null, can('key.manage') ? h('button', { type: 'button', class: 'danger', t: 'common.delete', on: { click: async () => {
          if (!(await confirmDialog('keys.confirm_delete', { name: k.name }))) return;
          try {
            await api.keyDelete(k.id);
            void load();
          } catch (e) {
            err.show(e);
          }
        } } }) : null))));
      if (keys.items.length === 0) body.replaceChildren(h('tr', null, h('td', { colspan: 5, class: 'muted', t: 'common.none' })));
    } catch (e) {
      err.show(e);
    }
    try {
      const id = await api.identity();
      identity.textContent = id.public_key + '\n' + id.fingerprint;
    } catch (e) {
      identity.textContent = '—';
      err.show(e);
    }
  }
  void load();
  return { el };
}
