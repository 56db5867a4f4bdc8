// The run's hosts: state, exit code, duration, output size, a button that
// opens the host's terminal pane, and its log. Rows are built once and
// updated in place (only the cells that changed). Each row is its own CSS
// grid with content-visibility: auto, so the browser lays out and paints
// only the rows on screen: with 500 hosts changing state every frame, a
// <table> (whose layout spans every row) cost a frame ~100 ms.
import { h, fmtDuration, setText } from '../dom';
import { setBadge, stateBadge } from './state-badge';

export interface HostState {
  idx: number;
  name: string;
  address: string;
  state: string;
  exit: number | null;
  signal: string;
  error: string;
  started: number | null; // ms since epoch
  finished: number | null;
  durationMS: number | null; // from the server once known
  bytes: number;
}

interface Row {
  tr: HTMLElement;
  badge: HTMLElement;
  exit: HTMLElement;
  duration: HTMLElement;
  bytes: HTMLElement;
  open: HTMLButtonElement;
  shown: { state: string; exit: string; duration: string; bytes: string };
}

export class HostTable {
  readonly el: HTMLElement;
  private readonly body = h('div', { id: 'host-rows', role: 'rowgroup' });
  private readonly rows = new Map<number, Row>();
  private filter = '';

  constructor(
    hosts: HostState[],
    logURL: (idx: number) => string,
    private readonly toggle: (idx: number) => void,
  ) {
    const frag = document.createDocumentFragment();
    for (const hs of hosts) {
      const badge = stateBadge(hs.state);
      const open = h('button', { type: 'button', class: 'small', 'data-open-host': hs.name, t: 'run.open_terminal', on: { click: () => this.toggle(hs.idx) } });
      const exit = h('div', { class: 'num', role: 'cell', 'data-exit': hs.name });
      const duration = h('div', { class: 'num', role: 'cell' });
      const bytes = h('div', { class: 'num', role: 'cell' });
      const log = h('a', { href: logURL(hs.idx), download: true, class: 'small', t: 'run.log' });
      const tr = h('div', { class: 'host-row', role: 'row', 'data-host': hs.name, 'data-idx': hs.idx },
        h('div', { role: 'cell', class: 'host-name' }, h('strong', null, hs.name), h('small', { class: 'muted mono' }, ' ', hs.address)),
        h('div', { role: 'cell', 'data-host-state': hs.name }, badge), exit, duration, bytes, h('div', { class: 'actions', role: 'cell' }, open, log));
      const row: Row = { tr, badge, exit, duration, bytes, open, shown: { state: '', exit: '', duration: '', bytes: '' } };
      this.rows.set(hs.idx, row);
      this.update(hs, Date.now());
      frag.appendChild(tr);
    }
    this.body.appendChild(frag);
    this.el = h('div', { class: 'hosts', id: 'host-table', role: 'table' },
      h('div', { class: 'host-row head', role: 'row' }, h('div', { role: 'columnheader', t: 'run.host' }), h('div', { role: 'columnheader', t: 'runs.state' }),
        h('div', { role: 'columnheader', class: 'num', t: 'run.exit_code' }), h('div', { role: 'columnheader', class: 'num', t: 'run.duration' }),
        h('div', { role: 'columnheader', class: 'num', t: 'run.output' }), h('div', { role: 'columnheader' })),
      this.body);
  }

  // update writes what changed of one host into its row.
  update(hs: HostState, now: number): void {
    const row = this.rows.get(hs.idx);
    if (!row) return;
    if (row.shown.state !== hs.state) {
      row.shown.state = hs.state;
      setBadge(row.badge, hs.state);
      row.tr.dataset.state = hs.state;
      row.tr.hidden = this.filter !== '' && this.filter !== hs.state;
      if (hs.error) row.badge.title = hs.error;
    }
    const exit = hs.exit !== null ? String(hs.exit) + (hs.signal ? ' (' + hs.signal + ')' : '') : hs.signal || '';
    if (row.shown.exit !== exit) row.exit.textContent = row.shown.exit = exit;
    let ms = hs.durationMS;
    if (ms === null && hs.started !== null) ms = (hs.finished ?? now) - hs.started;
    const duration = ms === null ? '' : fmtDuration(ms);
    if (row.shown.duration !== duration) row.duration.textContent = row.shown.duration = duration;
    const bytes = hs.bytes ? formatBytes(hs.bytes) : '';
    if (row.shown.bytes !== bytes) row.bytes.textContent = row.shown.bytes = bytes;
  }

  setOpen(idx: number, open: boolean): void {
    const row = this.rows.get(idx);
    if (!row) return;
    row.open.classList.toggle('active', open);
    setText(row.open, open ? 'run.close_terminal' : 'run.open_terminal');
  }

  // showOnly filters the rows by state ('' for all).
  showOnly(state: string): void {
    this.filter = state;
    for (const row of this.rows.values()) row.tr.hidden = state !== '' && row.shown.state !== state;
  }
}

function formatBytes(n: number): string {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1024 / 1024).toFixed(1) + ' MiB';
}
