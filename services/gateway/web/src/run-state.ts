// The state of a run as the run view shows it, and how the messages of its
// WebSocket stream change it: output chunks, host status, exit, errors and
// done, whether live or replayed after a reconnect. No DOM here: the run
// view applies a batch, then redraws what the batch reports as changed.
import type { Run, RunHost, WSMessage } from './api';
import type { HostState } from './components/host-table';

export const finalRun = new Set(['succeeded', 'failed', 'canceled', 'aborted']);
export const finalHost = new Set(['ok', 'failed', 'timeout', 'unreachable', 'auth_failed', 'hostkey_rejected', 'canceled', 'lost', 'skipped']);
export const stateOrder = ['queued', 'connecting', 'running', 'ok', 'failed', 'timeout', 'unreachable', 'auth_failed', 'hostkey_rejected', 'canceled', 'lost', 'skipped'];

// A host's output is kept in memory up to this many bytes (or characters)
// while its pane is closed; the full log is always downloadable.
export const maxBuffered = 2 << 20;

export type Chunk = string | Uint8Array;

export interface HostModel extends HostState {
  chunks: Chunk[]; // what an opened pane replays
  buffered: number;
  trimmed: boolean; // chunks lost their oldest part to maxBuffered
}

export interface RunModel {
  state: string;
  error: string; // the run's own error or abort reason
  hosts: Map<number, HostModel>;
  byName: Map<string, HostModel>;
}

// Applied is what one batch changed: the hosts whose row needs a redraw,
// each with the output it received (for its pane, if open).
export interface Applied {
  changed: Map<HostModel, Chunk[]>;
  errorChanged: boolean;
  done: boolean; // the stream ended; model.state holds the state it gave
}

export function atMS(s: string | null | undefined): number | null {
  if (!s) return null;
  const t = Date.parse(s);
  return isNaN(t) ? null : t;
}

export function decode(m: WSMessage): Chunk {
  if (m.encoding !== 'base64') return m.payload;
  const bin = atob(m.payload);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function hostModel(rh: RunHost): HostModel {
  return {
    idx: rh.idx, name: rh.name, address: rh.address, state: rh.state, exit: rh.exit_code, signal: rh.signal ?? '', error: rh.error ?? '',
    started: atMS(rh.started_at), finished: atMS(rh.finished_at), durationMS: rh.duration_ms, bytes: 0, // counted as the transcript replays
    chunks: [], buffered: 0, trimmed: false,
  };
}

// runModel is the state of a run as the API returned it, before any message.
export function runModel(run: Run): RunModel {
  const m: RunModel = { state: run.state, error: run.error || run.abort_reason || '', hosts: new Map(), byName: new Map() };
  for (const rh of run.hosts ?? []) {
    const hm = hostModel(rh);
    m.hosts.set(hm.idx, hm);
    m.byName.set(hm.name, hm);
  }
  return m;
}

// applyMessages folds one batch of messages into the model. It changes the
// model in place: copying every host's buffered output per frame would cost
// more than the redraw it feeds. now stands in for an exit without a time.
export function applyMessages(model: RunModel, msgs: WSMessage[], now: number): Applied {
  const changed = new Map<HostModel, Chunk[]>();
  const touch = (hm: HostModel) => {
    let out = changed.get(hm);
    if (!out) changed.set(hm, (out = []));
    return out;
  };
  let errorChanged = false;
  let done: WSMessage | null = null;
  for (const m of msgs) {
    const hm = m.idx !== undefined ? model.hosts.get(m.idx) : m.host ? model.byName.get(m.host) : undefined;
    switch (m.type) {
      case 'stdout':
      case 'stderr': {
        if (!hm) break;
        const c = decode(m);
        hm.chunks.push(c);
        hm.buffered += c.length;
        hm.bytes += c.length;
        while (hm.buffered > maxBuffered && hm.chunks.length > 1) {
          hm.buffered -= hm.chunks.shift()!.length;
          hm.trimmed = true;
        }
        touch(hm).push(c);
        break;
      }
      case 'status':
        if (!hm) break;
        hm.state = m.state || m.payload;
        if (hm.state === 'running' || hm.state === 'connecting') hm.started = hm.started ?? atMS(m.at);
        if (hm.state === 'queued') {
          hm.started = hm.finished = null;
          hm.exit = null;
        }
        if (finalHost.has(hm.state)) hm.finished = hm.finished ?? atMS(m.at);
        touch(hm);
        break;
      case 'exit':
        if (!hm) break;
        hm.state = m.state || hm.state;
        hm.exit = m.exit_code ?? null;
        hm.signal = m.signal ?? '';
        hm.finished = atMS(m.at) ?? now;
        touch(hm);
        break;
      case 'error': {
        if (!hm) {
          model.error = m.payload;
          errorChanged = true;
          break;
        }
        const text = '\x1b[33m[' + m.payload + ']\x1b[0m\n';
        hm.error = m.payload;
        hm.chunks.push(text);
        touch(hm).push(text);
        break;
      }
      case 'done':
        done = m;
        break;
    }
  }
  if (changed.size && !finalRun.has(model.state)) model.state = 'running';
  if (done) model.state = done.state || done.payload;
  return { changed, errorChanged, done: done !== null };
}

// applyFinal takes the server's final numbers for a finished run (the reload
// after done) and returns the hosts it updated.
export function applyFinal(model: RunModel, run: Run): HostModel[] {
  const updated: HostModel[] = [];
  for (const rh of run.hosts ?? []) {
    const hm = model.hosts.get(rh.idx);
    if (!hm) continue;
    hm.state = rh.state;
    hm.exit = rh.exit_code;
    hm.signal = rh.signal ?? '';
    hm.durationMS = rh.duration_ms;
    hm.bytes = rh.output_bytes;
    hm.error = rh.error ?? hm.error;
    updated.push(hm);
  }
  model.state = run.state;
  if (run.error || run.abort_reason) model.error = run.error || run.abort_reason || '';
  return updated;
}

// stateCounts is the number of hosts in each state.
export function stateCounts(model: RunModel): Record<string, number> {
  const n: Record<string, number> = {};
  for (const hm of model.hosts.values()) n[hm.state] = (n[hm.state] ?? 0) + 1;
  return n;
}

// rerunnable reports whether the run is over with hosts that did not end ok.
export function rerunnable(model: RunModel): boolean {
  if (!finalRun.has(model.state)) return false;
  for (const hm of model.hosts.values()) if (hm.state !== 'ok') return true;
  return false;
}
