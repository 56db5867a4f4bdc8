// The grouped view: hosts whose output, state and exit code are the same,
// as one entry each (GET /api/runs/{id}/summary).
import { h, setText } from '../dom';
import { api } from '../api';
import { errorBox } from './notice';
import { stateBadge } from './state-badge';

export function summaryView(runID: string): HTMLElement {
  const err = errorBox();
  const list = h('div', { class: 'groups', id: 'summary-groups' });
  const el = h('div', { class: 'card', id: 'run-summary' }, h('h2', { t: 'run.grouped' }), err.el, list);
  void (async () => {
    try {
      const s = await api.runSummary(runID);
      list.replaceChildren(...(s.groups ?? []).map((g) => {
        const count = h('span', { class: 'muted' });
        setText(count, 'run.group_hosts', { n: g.count });
        const out = h('pre', { class: 'mono output' });
        if (g.output !== undefined && g.output !== '') out.textContent = g.output;
        else setText(out, g.bytes > 0 ? 'run.group_output_large' : 'run.group_no_output');
        return h('div', { class: 'group', 'data-group': g.hosts },
          h('div', { class: 'group-head' }, stateBadge(g.state), g.exit_code !== null ? h('span', { class: 'mono' }, 'exit ' + g.exit_code) : null,
            h('code', { class: 'wrap' }, g.hosts), count),
          out);
      }));
    } catch (e) {
      err.show(e);
    }
  })();
  return el;
}
