// The login page: username and master key. The key lives only in the
// input until the request is sent; the session is the HttpOnly cookie.
import { h, field, setText } from '../dom';
import { api } from '../api';
import { errorBox } from './notice';
import { prefs } from './prefs';
import type { Page } from './page';
import type { Key } from '../i18n';

export function loginPage(onLoggedIn: () => Promise<void>, reason?: Key): Page {
  const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = errorBox();
  const submit = h('button', { type: 'submit', id: 'login-submit', class: 'primary', t: 'login.submit' });
  const why = h('p', { class: 'login-reason', id: 'login-reason', hidden: !reason });
  if (reason) setText(why, reason);
  const form = h('form', { class: 'login-form', id: 'login-form' },
    h('h1', null, 'testum'),
    h('p', { class: 'muted', t: 'login.tagline' }),
    why,
    field('login.username', username),
    field('login.master_key', password),
    err.el,
    submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hide();
    submit.disabled = true;
    try {
      await api.login(username.value.trim(), password.value);
      password.value = '';
      await onLoggedIn();
    } catch (e) {
      password.value = '';
      err.show(e);
    } finally {
      submit.disabled = false;
    }
  });
  const el = h('div', { class: 'login-page', id: 'page-login' }, h('div', { class: 'login-prefs' }, prefs()), form);
  queueMicrotask(() => username.focus());
  return { el };
}
