// Deploy or revoke public keys on a platform (a normal run: it opens the
// live run view).
import { h } from '../dom';
import { api } from '../api';
import { navigate } from '../router';
import { openDialog } from './dialog';
import { errorBox } from './notice';

export async function deployDialog(id: number, name: string): Promise<void> {
  const err = errorBox();
  const list = h('div', { class: 'checklist', id: 'deploy-keys' });
  const identity = h('input', { type: 'checkbox', id: 'deploy-identity' });
  const go = async (revoke: boolean) => {
    err.hide();
    const ids = [...list.querySelectorAll<HTMLInputElement>('input:checked')].map((c) => Number(c.value));
    try {
      const r = revoke ? await api.revokeKeys(id, ids, identity.checked) : await api.deployKeys(id, ids, identity.checked);
      d.close();
      navigate('/runs/' + r.id);
    } catch (e) {
      err.show(e);
    }
  };
  const d = openDialog('deploy.title', 'deploy-dialog', h('p', { class: 'mono' }, name), list,
    h('label', { class: 'check' }, identity, h('span', { t: 'deploy.identity' })), err.el,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', id: 'deploy-go', t: 'deploy.deploy', on: { click: () => void go(false) } }),
      h('button', { type: 'button', class: 'danger', id: 'revoke-go', t: 'deploy.revoke', on: { click: () => void go(true) } })));
  try {
    const keys = await api.keys({ limit: 1000 });
    list.replaceChildren(...keys.items.map((k) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: k.id }), h('span', null, k.name), h('small', { class: 'mono muted' }, k.fingerprint))));
  } catch (e) {
    err.show(e);
  }
}
