// The pinned and offered host keys of a platform; an extended_admin accepts
// the offered key by confirming its fingerprint.
import { h } from '../dom';
import { api } from '../api';
import { can } from '../session';
import { openDialog } from './dialog';
import { errorBox, notify } from './notice';

export async function hostKeyDialog(id: number, name: string, changed: () => void): Promise<void> {
  const err = errorBox();
  const body = h('div', { id: 'hostkey-info' });
  const d = openDialog('hk.title', 'hostkey-dialog', h('p', { class: 'mono' }, name), body, err.el);
  try {
    const hk = await api.hostKey(id);
    body.append(
      h('dl', { class: 'kv' },
        h('dt', { t: 'hk.policy' }), h('dd', null, hk.policy),
        h('dt', { t: 'hk.pinned' }), h('dd', { class: 'mono', id: 'hk-pinned' }, hk.pinned_fingerprint || '—'),
        h('dt', { t: 'hk.offered' }), h('dd', { class: 'mono', id: 'hk-offered' }, hk.offered_fingerprint || '—')));
    if (hk.offered_fingerprint && can('platform.host_key')) {
      const fp = hk.offered_fingerprint;
      body.append(h('p', { class: 'warn', t: 'hk.check' }),
        h('button', { type: 'button', class: 'danger', id: 'hk-accept', t: 'hk.accept', on: { click: async () => {
          try {
            await api.hostKeyAccept(id, fp);
            notify('hk.accepted');
            d.close();
            changed();
          } catch (e) {
            err.show(e);
          }
        } } }));
    }
  } catch (e) {
    err.show(e);
  }
}
