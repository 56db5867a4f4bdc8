// Stored credentials: named passwords or private keys shared by platforms.
// Secrets go to the server once and are never shown again.
import { h, field, option, fmtTime } from '../dom';
import { api } from '../api';
import { can } from '../session';
import { errorBox } from './notice';
import { confirmDialog } from './dialog';

export function credentialsCard(): HTMLElement {
  const err = errorBox();
  const body = h('tbody', { id: 'credential-rows' });
  const name = h('input', { id: 'cred-name', required: true });
  const kind = h('select', { id: 'cred-kind' }, option('password', 'pf.auth_password'), option('private_key', 'pf.auth_key'));
  const secret = h('textarea', { id: 'cred-secret', rows: 3, class: 'mono', required: true });
  const form = h('form', { class: 'form', id: 'credential-form' }, h('div', { class: 'row' }, field('keys.name', name), field('pf.auth_method', kind)), field('cred.secret', secret),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', t: 'cred.add' })));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hide();
    try {
      const s = secret.value;
      await api.credentialCreate(kind.value === 'password' ? { name: name.value.trim(), kind: 'password', password: s } : { name: name.value.trim(), kind: 'private_key', private_key: s });
      secret.value = '';
      name.value = '';
      void load();
    } catch (e) {
      err.show(e);
    }
  });
  async function load(): Promise<void> {
    try {
      const cs = await api.credentials({ limit: 1000 });
      body.replaceChildren(...cs.items.map((c) => h('tr', null, h('td', null, c.name), h('td', null, c.kind), h('td', { class: 'mono' }, c.fingerprint || '—'), h('td', null, fmtTime(c.created_at)),
        h('td', null, can('credential.manage') ? h('button', { type: 'button', class: 'danger', t: 'common.delete', on: { click: async () => {
          if (!(await confirmDialog('keys.confirm_delete', { name: c.name }))) return;
          try {
            await api.credentialDelete(c.id);
            void load();
          } catch (e) {
            err.show(e);
          }
        } } }) : null))));
      if (cs.items.length === 0) body.replaceChildren(h('tr', null, h('td', { colspan: 5, class: 'muted', t: 'common.none' })));
    } catch (e) {
      err.show(e);
    }
  }
  void load();
  return h('div', { class: 'card', id: 'credentials' }, h('h2', { t: 'cred.title' }), err.el,
    h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', { t: 'keys.name' }), h('th', { t: 'pf.auth_method' }), h('th', { t: 'keys.fingerprint' }), h('th', { t: 'runs.created' }), h('th', null))), body),
    can('credential.manage') ? form : null);
}
