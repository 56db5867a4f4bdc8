// The one-time reveal of a generated master key: shown in a dialog, never
// stored by the console; closing the dialog forgets it.
import { h } from '../dom';
import { openDialog } from './dialog';

export function revealKey(username: string, key: string): void {
  const box = h('input', { id: 'reveal-key', class: 'mono', readonly: true, value: key, 'aria-label': 'master key' });
  const copy = h('button', { type: 'button', id: 'reveal-copy', t: 'users.copy' });
  copy.addEventListener('click', () => {
    box.select();
    void navigator.clipboard?.writeText(key).catch(() => {});
  });
  const d = openDialog('users.key_title', 'reveal-dialog', h('p', { class: 'mono' }, username), h('p', { class: 'warn', t: 'users.key_once' }),
    h('div', { class: 'row' }, box, copy),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'reveal-done', t: 'users.key_done', on: { click: () => d.close() } })));
  d.el.addEventListener('close', () => {
    box.value = '';
  });
  box.select();
}
