// The run composer: targets, a command or a script, and how to fan out.
import { h, field, option } from '../dom';
import { api, type RunRequest, type Targets } from '../api';
import type { Route } from '../router';
import { navigate } from '../router';
import { errorBox } from './notice';
import { targetPicker } from './target-picker';
import type { Page } from './page';

const interpreters = ['sh', 'bash', 'zsh', 'python3', 'python', 'perl', 'ruby', 'node', 'php'];

export function composerPage(r: Route): Page {
  const initial: Targets = { labels: r.query.get('labels') ?? undefined, hosts: r.query.get('hosts') ?? undefined };
  const ids = r.query.get('platform_ids');
  if (ids) initial.platform_ids = ids.split(',').map(Number).filter((n) => n > 0);
  const picker = targetPicker(initial);

  const mode = h('select', { id: 'rc-mode' }, option('command', 'rc.command'), option('script', 'rc.script'));
  const command = h('textarea', { id: 'rc-command', rows: 3, class: 'mono code', spellcheck: 'false', ph: 'rc.command_placeholder' });
  const interp = h('select', { id: 'rc-interpreter' }, ...interpreters.map((i) => option(i, null, i)));
  const body = h('textarea', { id: 'rc-script', rows: 12, class: 'mono code', spellcheck: 'false', ph: 'rc.script_placeholder' });
  const args = h('input', { id: 'rc-args', class: 'mono', ph: 'rc.args_placeholder' });
  const cmdBox = field('rc.command', command);
  const scriptBox = h('div', null, h('div', { class: 'row' }, field('rc.interpreter', interp), field('rc.args', args)), field('rc.script', body));
  const sync = () => {
    cmdBox.hidden = mode.value !== 'command';
    scriptBox.hidden = mode.value !== 'script';
  };
  mode.addEventListener('change', sync);
  sync();
  // Tab indents in the script editor instead of leaving it.
  body.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Tab' || ev.shiftKey) return;
    ev.preventDefault();
    const s = body.selectionStart;
    body.setRangeText('\t', s, body.selectionEnd, 'end');
  });

  const parallel = h('input', { id: 'rc-parallelism', type: 'number', min: 1, ph: 'rc.default' });
  const batch = h('input', { id: 'rc-batch', ph: 'rc.batch_placeholder' });
  const maxFail = h('input', { id: 'rc-max-failures', ph: 'rc.batch_placeholder' });
  const timeout = h('input', { id: 'rc-timeout', type: 'number', min: 1, ph: 'rc.default' });
  const err = errorBox();
  const submit = h('button', { type: 'submit', class: 'primary', id: 'rc-submit', t: 'rc.run' });
  const form = h('form', { class: 'form', id: 'composer' },
    picker.el,
    h('fieldset', { class: 'card' }, h('legend', { t: 'rc.what' }), field('rc.mode', mode), cmdBox, scriptBox),
    h('fieldset', { class: 'card' }, h('legend', { t: 'rc.how' }),
      h('div', { class: 'row' }, field('rc.parallelism', parallel), field('rc.batch', batch, 'rc.batch_hint'), field('rc.max_failures', maxFail, 'rc.max_failures_hint'), field('rc.timeout', timeout))),
    err.el, h('div', { class: 'actions' }, submit));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hide();
    const req: RunRequest = { targets: picker.targets() };
    if (mode.value === 'command') req.command = command.value;
    else req.script = { interpreter: interp.value, body: body.value, args: args.value.trim() ? args.value.trim().split(/\s+/) : undefined };
    if (parallel.value) req.parallelism = Number(parallel.value);
    if (timeout.value) req.timeout = Number(timeout.value);
    if (batch.value.trim()) req.batch = batch.value.trim();
    if (maxFail.value.trim()) req.max_failures = maxFail.value.trim();
    submit.disabled = true;
    try {
      const run = await api.runCreate(req);
      navigate('/runs/' + run.id);
    } catch (e) {
      err.show(e);
      submit.disabled = false;
    }
  });
  const el = h('section', { class: 'page', id: 'page-composer' }, h('div', { class: 'page-head' }, h('h1', { t: 'nav.new_run' })), form);
  return { el };
}
