// The live run view: host states updating as they change, counts per
// state, a terminal pane per host opened on demand, the grouped outputs,
// cancel, re-run of the failed hosts and the logs.
import { h, fmtTime, setText } from '../dom';
import { api, type Run, type WSMessage } from '../api';
import { applyFinal, applyMessages, finalRun, rerunnable, runModel, stateCounts, stateOrder } from '../run-state';
import { can, current } from '../session';
import { navigate } from '../router';
import { onTheme } from '../theme';
import type { Key } from '../i18n';
import { errorBox, notify } from './notice';
import { setBadge, stateBadge } from './state-badge';
import { HostTable } from './host-table';
import { TerminalPane } from './terminal-pane';
import { RunStream, type Connection } from './run-stream';
import { summaryView } from './summary-view';
import type { Page } from './page';

export function runPage(runID: string): Page {
  const err = errorBox();
  const el = h('section', { class: 'page', id: 'page-run', 'data-run': runID });
  const body = h('div', null, h('p', { class: 'muted', t: 'common.loading' }));
  el.append(err.el, body);
  let stream: RunStream | null = null;
  let tick = 0;
  let destroyed = false;
  let offTheme = () => {};
  const opened = new Map<number, TerminalPane>(); // the panes open, by host idx

  const destroy = () => {
    destroyed = true;
    offTheme();
    stream?.stop();
    window.clearInterval(tick);
    for (const pane of opened.values()) pane.dispose();
  };

  void (async () => {
    let run: Run;
    try {
      run = await api.run(runID);
    } catch (e) {
      body.replaceChildren();
      err.show(e);
      return;
    }
    if (destroyed) return;
    build(run);
  })();

  function build(run: Run): void {
    const model = runModel(run);
    const hosts = model.hosts;
    const stateEl = stateBadge(run.state);
    stateEl.id = 'run-state';
    const conn = h('span', { class: 'conn', id: 'run-conn' });
    const counts = h('div', { class: 'counts', id: 'run-counts' });
    const panes = h('div', { class: 'panes', id: 'run-panes' });
    const summaryBox = h('div', { id: 'run-summary-box' });
    const runErr = h('div', { class: 'error-box', id: 'run-error', hidden: !model.error }, model.error);
    let filter = '';

    const mine = current()?.user.username === run.created_by;
    const cancel = h('button', { type: 'button', class: 'danger', id: 'run-cancel', t: 'run.cancel' });
    cancel.hidden = !(can('run.cancel') && (mine || can('run.cancel_any')));
    cancel.addEventListener('click', async () => {
      cancel.disabled = true;
      try {
        await api.runCancel(runID);
        notify('run.cancel_sent');
      } catch (e) {
        err.show(e);
        cancel.disabled = false;
      }
    });
    const rerun = h('button', { type: 'button', id: 'run-rerun-failed', t: 'run.rerun_failed' });
    rerun.addEventListener('click', async () => {
      try {
        const r = await api.runRerun(runID, 'failed');
        navigate('/runs/' + r.id);
      } catch (e) {
        err.show(e);
      }
    });
    const summaryBtn = h('button', { type: 'button', id: 'run-grouped', t: 'run.grouped' });
    summaryBtn.addEventListener('click', () => {
      if (summaryBox.firstChild) summaryBox.replaceChildren();
      else summaryBox.replaceChildren(summaryView(runID));
    });
    const logs = h('a', { href: api.runLogsURL(runID), download: true, class: 'button', id: 'run-logs', t: 'run.download_logs' });
    const openAll = h('button', { type: 'button', id: 'run-open-all', t: 'run.open_all' });
    openAll.hidden = hosts.size > 12;
    openAll.addEventListener('click', () => {
      for (const idx of hosts.keys()) if (!opened.has(idx)) toggle(idx);
    });

    const table = new HostTable([...hosts.values()], (idx) => api.hostLogURL(runID, idx), (idx) => toggle(idx));

    const title = run.script ? run.script.body : run.command;
    body.replaceChildren(
      h('div', { class: 'page-head' }, h('h1', null, h('span', { t: 'run.title' }), ' ', stateEl), conn,
        h('span', { class: 'spacer' }), openAll, summaryBtn, logs, rerun, cancel),
      h('div', { class: 'card run-meta' },
        h('pre', { class: 'mono command', id: 'run-command' }, title),
        h('dl', { class: 'kv' },
          h('dt', { t: 'runs.by' }), h('dd', null, run.created_by),
          h('dt', { t: 'runs.created' }), h('dd', null, fmtTime(run.created_at)),
          h('dt', { t: 'runs.hosts' }), h('dd', null, run.host_count),
          h('dt', { t: 'rc.parallelism' }), h('dd', null, run.parallelism),
          h('dt', { t: 'rc.timeout' }), h('dd', { t: 'unit.s', targs: { n: run.timeout } }),
          run.batch ? h('dt', { t: 'rc.batch' }) : null, run.batch ? h('dd', null, run.batch) : null,
          run.max_failures ? h('dt', { t: 'rc.max_failures' }) : null, run.max_failures ? h('dd', null, run.max_failures) : null,
          run.parent_run_id ? h('dt', { t: 'run.parent' }) : null,
          run.parent_run_id ? h('dd', null, h('a', { href: '/runs/' + run.parent_run_id, 'data-link': true, class: 'mono' }, run.parent_run_id)) : null),
        runErr),
      counts, summaryBox, panes, table.el);

    const setConn = (c: Connection) => {
      conn.dataset.conn = c;
      setText(conn, ('run.conn_' + c) as Key);
    };
    const refreshButtons = () => {
      cancel.hidden = finalRun.has(model.state) || !(can('run.cancel') && (mine || can('run.cancel_any')));
      rerun.hidden = !rerunnable(model) || !can('run.create');
    };
    // The counts per state: one chip per state seen, updated in place.
    const chips = new Map<string, { el: HTMLButtonElement; n: HTMLElement }>();
    const chip = (state: string) => {
      let c = chips.get(state);
      if (c) return c;
      const n = h('strong', null, '0');
      const el = h('button', { type: 'button', class: 'chip', 'data-count-state': state }, state === 'all' ? h('span', { t: 'run.all_hosts' }) : stateBadge(state), n);
      el.addEventListener('click', () => {
        filter = filter === state || state === 'all' ? '' : state;
        table.showOnly(filter);
        for (const [s, x] of chips) x.el.classList.toggle('active', s === (filter || 'all'));
      });
      c = { el, n };
      chips.set(state, c);
      const order = ['all', ...stateOrder];
      const next = [...counts.children].find((x) => order.indexOf((x as HTMLElement).dataset.countState ?? '') > order.indexOf(state));
      counts.insertBefore(el, next ?? null);
      return c;
    };
    const renderCounts = () => {
      const n = stateCounts(model);
      chip('all').n.textContent = String(hosts.size);
      for (const s of stateOrder) {
        const have = chips.get(s);
        if (!n[s] && !have) continue;
        const c = have ?? chip(s);
        const text = String(n[s] ?? 0);
        if (c.n.textContent !== text) c.n.textContent = text;
        c.el.hidden = !n[s];
      }
      chips.get('all')!.el.classList.toggle('active', filter === '');
    };
    const showRunState = () => {
      setBadge(stateEl, model.state);
      el.dataset.runState = model.state;
      refreshButtons();
    };
    const showRunError = () => {
      runErr.textContent = model.error;
      runErr.hidden = false;
    };
    showRunState();
    renderCounts();

    function toggle(idx: number): void {
      const hm = hosts.get(idx);
      if (!hm) return;
      const open = opened.get(idx);
      if (open) {
        open.dispose();
        opened.delete(idx);
        table.setOpen(idx, false);
        return;
      }
      const pane = new TerminalPane(hm.name, hm.state, api.hostLogURL(runID, idx), () => toggle(idx));
      opened.set(idx, pane);
      panes.appendChild(pane.el);
      if (hm.trimmed) pane.write('\x1b[33m[…]\x1b[0m\n');
      for (const c of hm.chunks) pane.write(c);
      table.setOpen(idx, true);
    }
    offTheme = onTheme((t) => {
      for (const pane of opened.values()) pane.setTheme(t);
    });

    // apply folds one frame's messages into the model, then touches the
    // DOM once per changed host and writes once per open pane.
    const apply = (msgs: WSMessage[]) => {
      const now = Date.now();
      const { changed, errorChanged, done } = applyMessages(model, msgs, now);
      if (errorChanged) showRunError();
      for (const [hm, chunks] of changed) {
        table.update(hm, now);
        const pane = opened.get(hm.idx);
        if (!pane) continue;
        pane.setState(hm.state);
        if (!chunks.length) continue;
        if (chunks.every((c) => typeof c === 'string')) pane.write(chunks.join(''));
        else for (const c of chunks) pane.write(c);
      }
      if (changed.size) renderCounts();
      if (changed.size || done) showRunState();
      if (done) void finish();
    };

    // finish reloads the run once for the server's final numbers.
    const finish = async () => {
      try {
        const r = await api.run(runID);
        if (destroyed) return;
        const now = Date.now();
        for (const hm of applyFinal(model, r)) {
          table.update(hm, now);
          opened.get(hm.idx)?.setState(hm.state);
        }
        showRunState();
        if (r.error || r.abort_reason) showRunError();
        renderCounts();
      } catch {
        /* the live state stands */
      }
    };

    // Running hosts' durations advance once a second.
    tick = window.setInterval(() => {
      const now = Date.now();
      for (const hv of hosts.values()) if (hv.started !== null && hv.finished === null) table.update(hv, now);
    }, 1000);

    stream = new RunStream(runID, {
      batch: apply,
      connection: setConn,
      sessionEnded: () => void api.me().catch(() => {}),
    });
    (el as HTMLElement & { testumStream?: RunStream }).testumStream = stream;
    stream.start();
  }

  return { el, destroy };
}
