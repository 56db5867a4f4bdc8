// Add or edit a platform: address, login, password or private key (or a
// stored credential), labels, jump host. On edit an empty secret keeps the
// current one.
import { h, field, option } from '../dom';
import { api, type Platform, type PlatformRequest } from '../api';
import { openDialog } from './dialog';
import { errorBox } from './notice';

// labelsText renders labels as role=web,env=prod.
export function labelsText(l: Record<string, string> | null | undefined): string {
  return Object.entries(l ?? {}).map(([k, v]) => (v ? `${k}=${v}` : k)).join(',');
}

export function platformForm(existing: Platform | null, saved: (p: Platform) => void): void {
  const name = h('input', { id: 'pf-name', required: true, value: existing?.name ?? '' });
  const host = h('input', { id: 'pf-host', required: true, value: existing?.host ?? '' });
  const port = h('input', { id: 'pf-port', type: 'number', min: 1, max: 65535, value: existing?.port ?? 22 });
  const user = h('input', { id: 'pf-username', required: true, value: existing?.username ?? '' });
  const auth = h('select', { id: 'pf-auth' }, option('password', 'pf.auth_password'), option('private_key', 'pf.auth_key'), option('credential', 'pf.auth_credential'));
  const password = h('input', { id: 'pf-password', type: 'password', autocomplete: 'new-password', ph: existing ? 'pf.keep_secret' : undefined });
  const key = h('textarea', { id: 'pf-private-key', rows: 5, class: 'mono', ph: existing ? 'pf.keep_secret' : 'pf.key_placeholder' });
  const passphrase = h('input', { id: 'pf-passphrase', type: 'password', autocomplete: 'off' });
  const cred = h('select', { id: 'pf-credential' });
  const labels = h('input', { id: 'pf-labels', class: 'mono', ph: 'pf.labels_placeholder', value: labelsText(existing?.labels) });
  const jump = h('select', { id: 'pf-jump' }, option('', 'pf.no_jump'));
  const policy = h('select', { id: 'pf-policy' }, option('', 'pf.policy_global'), option('auto_add', 'pf.policy_auto'), option('strict', 'pf.policy_strict'));
  policy.value = existing?.host_key_policy ?? '';
  if (existing) auth.value = existing.credential_id ? 'credential' : existing.auth_method;

  const pwField = field('pf.password', password);
  const keyFields = h('div', null, field('pf.private_key', key), field('pf.passphrase', passphrase));
  const credField = field('pf.credential', cred);
  const sync = () => {
    pwField.hidden = auth.value !== 'password';
    keyFields.hidden = auth.value !== 'private_key';
    credField.hidden = auth.value !== 'credential';
  };
  auth.addEventListener('change', sync);
  sync();

  // Stored credentials and jump hosts are offered when the role may read them.
  void api.credentials({ limit: 1000 }).then((cs) => {
    for (const c of cs.items) cred.appendChild(option(String(c.id), null, `${c.name} (${c.kind})`));
    if (existing?.credential_id) cred.value = String(existing.credential_id);
  }).catch(() => {});
  void api.platforms({ limit: 1000 }).then((ps) => {
    for (const p of ps.items) if (p.id !== existing?.id) jump.appendChild(option(String(p.id), null, p.name));
    if (existing?.jump_platform_id) jump.value = String(existing.jump_platform_id);
  }).catch(() => {});

  const err = errorBox();
  const submit = h('button', { type: 'submit', class: 'primary', id: 'pf-submit', t: existing ? 'common.save' : 'pf.add' });
  const form = h('form', { id: 'platform-form', class: 'form' },
    h('div', { class: 'row' }, field('pf.name', name), field('pf.host', host), field('pf.port', port)),
    h('div', { class: 'row' }, field('pf.username', user), field('pf.auth_method', auth)),
    pwField, keyFields, credField,
    field('pf.labels', labels, 'pf.labels_hint'),
    h('div', { class: 'row' }, field('pf.jump', jump), field('pf.host_key_policy', policy)),
    err.el,
    h('div', { class: 'actions' }, submit));
  const d = openDialog(existing ? 'pf.edit_title' : 'pf.add_title', 'platform-dialog', form);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hide();
    const req: PlatformRequest = {
      name: name.value.trim(), host: host.value.trim(), port: Number(port.value) || 22, username: user.value.trim(),
      auth_method: auth.value === 'credential' ? '' : auth.value, labels: labels.value.trim(),
      host_key_policy: policy.value,
    };
    if (jump.value) req.jump_platform_id = Number(jump.value);
    if (auth.value === 'password' && password.value) req.password = password.value;
    if (auth.value === 'private_key' && key.value.trim()) {
      req.private_key = key.value;
      if (passphrase.value) req.passphrase = passphrase.value;
    }
    if (auth.value === 'credential' && cred.value) {
      req.credential_id = Number(cred.value);
      const c = cred.selectedOptions[0]?.textContent ?? '';
      req.auth_method = c.includes('private_key') ? 'private_key' : 'password';
    }
    submit.disabled = true;
    try {
      const p = existing ? await api.platformUpdate(existing.id, req) : await api.platformCreate(req);
      password.value = '';
      key.value = '';
      passphrase.value = '';
      d.close();
      saved(p);
    } catch (e) {
      err.show(e);
    } finally {
      submit.disabled = false;
    }
  });
  name.focus();
}
