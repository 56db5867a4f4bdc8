// Users and sessions (super_admin): create a user (the master key is shown
// once), change roles, reset keys, delete; see and end sessions.
import { h, field, option, fmtTime, setText } from '../dom';
import { api, roles, type Role, type User } from '../api';
import { current } from '../session';
import type { Key } from '../i18n';
import { errorBox } from './notice';
import { confirmDialog } from './dialog';
import { revealKey } from './reveal-key';
import { sessionsCard } from './sessions';
import type { Page } from './page';

function roleSelect(id: string, value: Role): HTMLSelectElement {
  const s = h('select', { id }, ...roles.map((r) => option(r, ('role.' + r) as Key)));
  s.value = value;
  return s;
}

export function usersPage(): Page {
  const err = errorBox();
  const body = h('tbody', { id: 'user-rows' });
  const name = h('input', { id: 'user-name', required: true, autocomplete: 'off' });
  const role = roleSelect('user-role', 'admin');
  const form = h('form', { class: 'form card', id: 'user-form' }, h('h2', { t: 'users.add' }),
    h('div', { class: 'row' }, field('login.username', name), field('users.role', role)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'user-submit', t: 'users.add' })));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hide();
    try {
      const r = await api.userCreate(name.value.trim(), role.value as Role);
      name.value = '';
      revealKey(r.user.username, r.master_key);
      void load();
    } catch (e) {
      err.show(e);
    }
  });

  function row(u: User): HTMLElement {
    const self = current()?.user.id === u.id;
    const rs = roleSelect('role-' + u.id, u.role);
    rs.disabled = self;
    rs.addEventListener('change', async () => {
      try {
        await api.userUpdate(u.id, rs.value as Role);
        void load();
      } catch (e) {
        rs.value = u.role;
        err.show(e);
      }
    });
    const you = h('small', { class: 'muted' });
    if (self) setText(you, 'users.you');
    return h('tr', { 'data-user': u.username }, h('td', null, h('strong', null, u.username), ' ', you), h('td', null, rs),
      h('td', null, fmtTime(u.last_login_at)), h('td', null, fmtTime(u.key_changed_at)),
      h('td', { class: 'actions' },
        h('button', { type: 'button', 'data-reset': u.username, t: 'users.reset_key', on: { click: async () => {
          if (!(await confirmDialog('users.confirm_reset', { name: u.username }))) return;
          try {
            const r = await api.userResetKey(u.id);
            revealKey(u.username, r.master_key);
          } catch (e) {
            err.show(e);
          }
        } } }),
        self ? null : h('button', { type: 'button', class: 'danger', 'data-delete-user': u.username, t: 'common.delete', on: { click: async () => {
          if (!(await confirmDialog('users.confirm_delete', { name: u.username }))) return;
          try {
            await api.userDelete(u.id);
            void load();
          } catch (e) {
            err.show(e);
          }
        } } })));
  }

  async function load(): Promise<void> {
    try {
      const us = await api.users({ limit: 1000 });
      body.replaceChildren(...us.items.map(row));
    } catch (e) {
      err.show(e);
    }
  }
  void load();
  const el = h('section', { class: 'page', id: 'page-users' }, h('div', { class: 'page-head' }, h('h1', { t: 'nav.users' })), err.el,
    h('div', { class: 'card' }, h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', { t: 'login.username' }), h('th', { t: 'users.role' }),
      h('th', { t: 'users.last_login' }), h('th', { t: 'users.key_changed' }), h('th', { t: 'common.actions' }))), body)),
    form, sessionsCard());
  return { el };
}
