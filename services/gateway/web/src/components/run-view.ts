// The live run view: host states updating as they change, counts per
// state, a terminal pane per host opened on demand, the grouped outputs,
// cancel, re-run of the failed hosts and the logs.
import { h, fmtTime, setText } from '../dom';
import { api, type Run, type WSMessage } from '../api';
import { can, current } from '../session';
import { navigate } from '../router';
import { onTheme } from '../theme';
import type { Key } from '../i18n';
import { errorBox, notify } from './notice';
import { setBadge, stateBadge } from './state-badge';
import { HostTable, type HostState } from './host-table';
import { TerminalPane } from './terminal-pane';
import { RunStream, type Connection } from './run-stream';
import { summaryView } from './summary-view';
import type { Page } from './page';

const finalRun = new Set(['succeeded', 'failed', 'canceled', 'aborted']);
const finalHost = new Set(['ok', 'failed', 'timeout', 'unreachable', 'auth_failed', 'hostkey_rejected', 'canceled', 'lost', 'skipped']);
const stateOrder = ['queued', 'connecting', 'running', 'ok', 'failed', 'timeout', 'unreachable', 'auth_failed', 'hostkey_rejected', 'canceled', 'lost', 'skipped'];

// A host's output is kept in memory up to this many bytes (or characters)
// while its pane is closed; the full log is always downloadable.
const maxBuffered = 2 << 20;

type Chunk = string | Uint8Array;

interface HostView extends HostState {
  chunks: Chunk[];
  buffered: number;
  trimmed: boolean;
  pending: Chunk[]; // for an open pane, written at the next frame
  pane: TerminalPane | null;
}

function decode(m: WSMessage): Chunk {
  if (m.encoding !== 'base64') return m.payload;
  const bin = atob(m.payload);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function atMS(s: string | null | undefined): number | null {
  if (!s) return null;
  const t = Date.parse(s);
  return isNaN(t) ? null : t;
}

export function runPage(runID: string): Page {
  const err = errorBox();
  const el = h('section', { class: 'page', id: 'page-run', 'data-run': runID });
  const body = h('div', null, h('p', { class: 'muted', t: 'common.loading' }));
  el.append(err.el, body);
  let stream: RunStream | null = null;
  let tick = 0;
  let destroyed = false;
  let offTheme = () => {};
  const hosts = new Map<number, HostView>();
  const byName = new Map<string, HostView>();

  const destroy = () => {
    destroyed = true;
    offTheme();
    stream?.stop();
    window.clearInterval(tick);
    for (const hv of hosts.values()) hv.pane?.dispose();
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
    for (const rh of run.hosts ?? []) {
      const hv: HostView = {
        idx: rh.idx, name: rh.name, address: rh.address, state: rh.state, exit: rh.exit_code, signal: rh.signal ?? '', error: rh.error ?? '',
        started: atMS(rh.started_at), finished: atMS(rh.finished_at), durationMS: rh.duration_ms, bytes: 0, // counted as the transcript replays
        chunks: [], buffered: 0, trimmed: false, pending: [], pane: null,
      };
      hosts.set(hv.idx, hv);
      byName.set(hv.name, hv);
    }
    build(run);
  })();

  function build(run: Run): void {
    let runState = run.state;
    const stateEl = stateBadge(run.state);
    stateEl.id = 'run-state';
    const conn = h('span', { class: 'conn', id: 'run-conn' });
    const counts = h('div', { class: 'counts', id: 'run-counts' });
    const panes = h('div', { class: 'panes', id: 'run-panes' });
    const summaryBox = h('div', { id: 'run-summary-box' });
    const runErr = h('div', { class: 'error-box', id: 'run-error', hidden: !run.error && !run.abort_reason }, run.error || run.abort_reason || '');
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
      for (const hv of hosts.values()) if (!hv.pane) toggle(hv.idx);
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
      const final = finalRun.has(runState);
      cancel.hidden = final || !(can('run.cancel') && (mine || can('run.cancel_any')));
      let notOK = 0;
      for (const hv of hosts.values()) if (hv.state !== 'ok') notOK++;
      rerun.hidden = !final || notOK === 0 || !can('run.create');
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
      const n: Record<string, number> = {};
      for (const hv of hosts.values()) n[hv.state] = (n[hv.state] ?? 0) + 1;
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
    const setRunState = (s: string) => {
      runState = s;
      setBadge(stateEl, s);
      el.dataset.runState = s;
      refreshButtons();
    };
    setRunState(run.state);
    renderCounts();

    function toggle(idx: number): void {
      const hv = hosts.get(idx);
      if (!hv) return;
      if (hv.pane) {
        hv.pane.dispose();
        hv.pane = null;
        table.setOpen(idx, false);
        return;
      }
      hv.pane = new TerminalPane(hv.name, hv.state, api.hostLogURL(runID, idx), () => toggle(idx));
      panes.appendChild(hv.pane.el);
      if (hv.trimmed) hv.pane.write('\x1b[33m[…]\x1b[0m\n');
      for (const c of hv.chunks) hv.pane.write(c);
      table.setOpen(idx, true);
    }
    offTheme = onTheme((t) => {
      for (const hv of hosts.values()) hv.pane?.setTheme(t);
    });

    // apply folds one frame's messages into the host views, then touches
    // the DOM once per changed host and writes once per open pane.
    const dirty = new Set<HostView>();
    const apply = (msgs: WSMessage[]) => {
      let done: WSMessage | null = null;
      for (const m of msgs) {
        const hv = m.idx !== undefined ? hosts.get(m.idx) : m.host ? byName.get(m.host) : undefined;
        switch (m.type) {
          case 'stdout':
          case 'stderr': {
            if (!hv) break;
            const c = decode(m);
            hv.chunks.push(c);
            hv.buffered += c.length;
            hv.bytes += c.length;
            while (hv.buffered > maxBuffered && hv.chunks.length > 1) {
              hv.buffered -= hv.chunks.shift()!.length;
              hv.trimmed = true;
            }
            if (hv.pane) hv.pending.push(c);
            dirty.add(hv);
            break;
          }
          case 'status':
            if (!hv) break;
            hv.state = m.state || m.payload;
            if (hv.state === 'running' || hv.state === 'connecting') hv.started = hv.started ?? atMS(m.at);
            if (hv.state === 'queued') {
              hv.started = hv.finished = null;
              hv.exit = null;
            }
            if (finalHost.has(hv.state)) hv.finished = hv.finished ?? atMS(m.at);
            dirty.add(hv);
            break;
          case 'exit':
            if (!hv) break;
            hv.state = m.state || hv.state;
            hv.exit = m.exit_code ?? null;
            hv.signal = m.signal ?? '';
            hv.finished = atMS(m.at) ?? Date.now();
            dirty.add(hv);
            break;
          case 'error': {
            const text = '\x1b[33m[' + m.payload + ']\x1b[0m\n';
            if (!hv) {
              runErr.textContent = m.payload;
              runErr.hidden = false;
              break;
            }
            hv.error = m.payload;
            hv.chunks.push(text);
            if (hv.pane) hv.pending.push(text);
            dirty.add(hv);
            break;
          }
          case 'done':
            done = m;
            break;
        }
      }
      const now = Date.now();
      for (const hv of dirty) {
        table.update(hv, now);
        if (hv.pane) {
          hv.pane.setState(hv.state);
          if (hv.pending.length) {
            const chunks = hv.pending;
            hv.pending = [];
            if (chunks.every((c) => typeof c === 'string')) hv.pane.write((chunks as string[]).join(''));
            else for (const c of chunks) hv.pane.write(c);
          }
        }
      }
      if (dirty.size) {
        renderCounts();
        if (!finalRun.has(runState)) setRunState('running');
      }
      dirty.clear();
      if (done) finish(done.state || done.payload);
    };

    // finish reloads the run once for the server's final numbers.
    const finish = async (state: string) => {
      setRunState(state);
      try {
        const r = await api.run(runID);
        if (destroyed) return;
        for (const rh of r.hosts ?? []) {
          const hv = hosts.get(rh.idx);
          if (!hv) continue;
          hv.state = rh.state;
          hv.exit = rh.exit_code;
          hv.signal = rh.signal ?? '';
          hv.durationMS = rh.duration_ms;
          hv.bytes = rh.output_bytes;
          hv.error = rh.error ?? hv.error;
          table.update(hv, Date.now());
          hv.pane?.setState(hv.state);
        }
        setRunState(r.state);
        if (r.error || r.abort_reason) {
          runErr.textContent = r.error || r.abort_reason || '';
          runErr.hidden = false;
        }
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
