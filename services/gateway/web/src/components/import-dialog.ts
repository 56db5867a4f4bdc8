// Bulk import of platforms from an ssh_config or an Ansible inventory.
import { h, field, option } from '../dom';
import { api, type ImportRequest } from '../api';
import { openDialog } from './dialog';
import { errorBox } from './notice';
import { stateBadge } from './state-badge';

export function importDialog(done: () => void): void {
  const format = h('select', { id: 'imp-format' }, option('', 'imp.detect'), option('ssh_config', null, 'ssh_config'),
    option('ansible_ini', null, 'Ansible INI'), option('ansible_yaml', null, 'Ansible YAML'));
  const content = h('textarea', { id: 'imp-content', rows: 10, class: 'mono', ph: 'imp.content_placeholder' });
  const user = h('input', { id: 'imp-username' });
  const auth = h('select', { id: 'imp-auth' }, option('password', 'pf.auth_password'), option('private_key', 'pf.auth_key'));
  const secret = h('textarea', { id: 'imp-secret', rows: 2, class: 'mono' });
  const labels = h('input', { id: 'imp-labels', class: 'mono', ph: 'pf.labels_placeholder' });
  const err = errorBox();
  const results = h('tbody', { id: 'imp-results' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'imp-submit', t: 'imp.submit' });
  const form = h('form', { class: 'form', id: 'import-form' },
    field('imp.format', format), field('imp.content', content),
    h('div', { class: 'row' }, field('pf.username', user, 'imp.username_hint'), field('pf.auth_method', auth)),
    field('imp.secret', secret),
    field('pf.labels', labels, 'pf.labels_hint'),
    err.el, h('div', { class: 'actions' }, submit),
    h('table', { class: 'table' }, results));
  openDialog('imp.title', 'import-dialog', form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hide();
    const req: ImportRequest = { format: format.value, content: content.value, username: user.value.trim(), auth_method: auth.value };
    if (secret.value) {
      if (auth.value === 'password') req.password = secret.value;
      else req.private_key = secret.value;
    }
    const lv = labels.value.trim();
    if (lv) {
      req.labels = {};
      for (const pair of lv.split(',')) {
        const [k, v] = pair.split('=');
        if (k.trim()) req.labels[k.trim()] = (v ?? '').trim();
      }
    }
    submit.disabled = true;
    try {
      const r = await api.platformImport(req);
      secret.value = '';
      results.replaceChildren(...(r.items ?? []).map((it) => h('tr', null, h('td', null, it.name), h('td', null, stateBadge(it.result)), h('td', { class: 'muted' }, it.reason ?? ''))));
      done();
    } catch (e) {
      err.show(e);
    } finally {
      submit.disabled = false;
    }
  });
}
