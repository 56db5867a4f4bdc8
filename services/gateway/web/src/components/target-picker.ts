// Run targets: platforms picked from the list, a label selector and a host
// expression (the union of the three), with a live preview of the hosts.
import { h, field, setText } from '../dom';
import { api, type Targets } from '../api';

export interface TargetPicker {
  el: HTMLElement;
  targets: () => Targets;
}

export function targetPicker(initial: Targets): TargetPicker {
  const search = h('input', { id: 'tp-search', ph: 'tp.search' });
  const list = h('div', { class: 'checklist scroll', id: 'tp-platforms' });
  const labels = h('input', { id: 'tp-labels', class: 'mono', ph: 'pf.labels_placeholder', value: initial.labels ?? '' });
  const hosts = h('input', { id: 'tp-hosts', class: 'mono', ph: 'tp.hosts_placeholder', value: initial.hosts ?? '' });
  const preview = h('div', { class: 'preview', id: 'tp-preview', 'aria-live': 'polite' });
  const count = h('strong', { id: 'tp-count' }, '0');
  const folded = h('code', { id: 'tp-hosts-folded', class: 'wrap' });
  const perr = h('div', { class: 'error-box', id: 'tp-error', hidden: true });
  preview.append(h('span', { t: 'tp.preview' }), ' ', count, ' ', folded, perr);
  const picked = new Set<number>(initial.platform_ids ?? []);

  const targets = (): Targets => {
    const t: Targets = {};
    if (picked.size) t.platform_ids = [...picked];
    if (labels.value.trim()) t.labels = labels.value.trim();
    if (hosts.value.trim()) t.hosts = hosts.value.trim();
    return t;
  };

  let timer = 0;
  let generation = 0;
  const refresh = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      const t = targets();
      const gen = ++generation;
      perr.hidden = true;
      if (!t.platform_ids && !t.labels && !t.hosts) {
        count.textContent = '0';
        folded.textContent = '';
        return;
      }
      try {
        const p = await api.runPreview(t);
        if (gen !== generation) return;
        count.textContent = String(p.count);
        folded.textContent = p.hosts;
      } catch (e) {
        if (gen !== generation) return;
        count.textContent = '0';
        folded.textContent = '';
        perr.textContent = e instanceof Error ? e.message : String(e);
        perr.hidden = false;
      }
    }, 250);
  };
  labels.addEventListener('input', refresh);
  hosts.addEventListener('input', refresh);

  const load = async () => {
    try {
      const ps = await api.platforms({ name: search.value.trim(), limit: 200 });
      list.replaceChildren(...ps.items.map((p) => {
        const cb = h('input', { type: 'checkbox', value: p.id, 'data-pick': p.name, checked: picked.has(p.id) });
        cb.addEventListener('change', () => {
          if (cb.checked) picked.add(p.id);
          else picked.delete(p.id);
          refresh();
        });
        return h('label', { class: 'check' }, cb, h('span', null, p.name), h('small', { class: 'muted mono' }, p.host));
      }));
      if (ps.total > ps.items.length) {
        const more = h('small', { class: 'muted' });
        setText(more, 'tp.more', { n: ps.total - ps.items.length });
        list.append(more);
      }
    } catch {
      /* the preview shows errors */
    }
  };
  let st = 0;
  search.addEventListener('input', () => {
    window.clearTimeout(st);
    st = window.setTimeout(() => void load(), 250);
  });
  void load();
  refresh();

  const el = h('fieldset', { class: 'card', id: 'target-picker' }, h('legend', { t: 'tp.title' }),
    h('div', { class: 'grid-2' },
      h('div', null, field('tp.pick', search), list),
      h('div', null, field('pf.labels', labels, 'tp.labels_hint'), field('tp.hosts', hosts, 'tp.hosts_hint'))),
    preview);
  return { el, targets };
}
