import { describe, expect, it } from 'vitest';
import type { Run, RunHost, RunState, WSMessage } from './api';
import { applyFinal, applyMessages, maxBuffered, rerunnable, runModel, stateCounts, type HostModel, type RunModel } from './run-state';

const now = Date.parse('2026-01-02T03:04:05Z');
const t1 = '2026-01-02T03:00:00Z';
const t2 = '2026-01-02T03:00:07Z';

function runHost(idx: number, name: string, over: Partial<RunHost> = {}): RunHost {
  return {
    idx, platform_id: 1, name, address: '127.0.0.' + (idx + 1), state: 'queued', exit_code: null, attempt: 1,
    output_bytes: 0, truncated: false, started_at: null, finished_at: null, duration_ms: null, ...over,
  };
}

function run(over: Partial<Run> = {}): Run {
  return {
    id: '7d3c1f0e-0000-4000-8000-000000000001', task_id: '7d3c1f0e-0000-4000-8000-000000000001', state: 'queued', kind: 'command', command: 'uptime', targets: {},
    parallelism: 10, timeout: 60, host_count: 2, created_by: 'alice', parent_run_id: null, cancel_requested: false,
    created_at: t1, started_at: null, finished_at: null, counts: null,
    hosts: [runHost(0, 'web01'), runHost(1, 'web02')], ...over,
  };
}

let seq = 0;
function msg(m: Partial<WSMessage> & Pick<WSMessage, 'type'>): WSMessage {
  return { seq: ++seq, payload: '', ...m };
}

const b64 = (s: string) => btoa(s);

// host picks the fields of a host that the cases compare.
function host(hm: HostModel | undefined) {
  if (!hm) return undefined;
  const { state, exit, signal, error, started, finished, bytes, chunks, trimmed } = hm;
  return { state, exit, signal, error, started, finished, bytes, chunks, trimmed };
}

function changedNames(m: RunModel, msgs: WSMessage[]) {
  const a = applyMessages(m, msgs, now);
  return { a, names: [...a.changed.keys()].map((h) => h.name) };
}

describe('runModel', () => {
  it('takes the hosts, states and times of the API run', () => {
    const m = runModel(run({
      state: 'running', error: '', abort_reason: 'max failures',
      hosts: [runHost(3, 'db01', { state: 'ok', exit_code: 0, started_at: t1, finished_at: t2, duration_ms: 7000, output_bytes: 99, signal: undefined, error: undefined })],
    }));
    expect(m.state).toBe('running');
    expect(m.error).toBe('max failures');
    expect(m.byName.get('db01')).toBe(m.hosts.get(3));
    expect(m.hosts.get(3)).toMatchObject({
      idx: 3, name: 'db01', address: '127.0.0.4', state: 'ok', exit: 0, signal: '', error: '',
      started: Date.parse(t1), finished: Date.parse(t2), durationMS: 7000,
      bytes: 0, // counted again as the transcript replays
      chunks: [], buffered: 0, trimmed: false,
    });
  });

  it('has no hosts when the run lists none', () => {
    expect(runModel(run({ hosts: undefined })).hosts.size).toBe(0);
  });
});

describe('applyMessages', () => {
  type Case = {
    name: string;
    run?: Run;
    msgs: WSMessage[];
    runState: string;
    hosts: Record<string, Partial<NonNullable<ReturnType<typeof host>>>>;
    changed: string[];
    done?: boolean;
    error?: string;
  };
  const cases: Case[] = [
    {
      name: 'a text chunk is buffered and counted, found by host name',
      msgs: [msg({ type: 'stdout', host: 'web01', payload: 'hello\n' })],
      runState: 'running',
      hosts: { web01: { chunks: ['hello\n'], bytes: 6 }, web02: { chunks: [], bytes: 0 } },
      changed: ['web01'],
    },
    {
      name: 'a base64 chunk is decoded to bytes, found by idx',
      msgs: [msg({ type: 'stderr', idx: 1, encoding: 'base64', payload: b64('\xff\x00A') })],
      runState: 'running',
      hosts: { web02: { chunks: [new Uint8Array([0xff, 0, 0x41])], bytes: 3 } },
      changed: ['web02'],
    },
    {
      name: 'idx wins over the host name',
      msgs: [msg({ type: 'stdout', idx: 1, host: 'web01', payload: 'x' })],
      runState: 'running',
      hosts: { web01: { chunks: [] }, web02: { chunks: ['x'] } },
      changed: ['web02'],
    },
    {
      name: 'messages for unknown hosts change nothing',
      msgs: [
        msg({ type: 'stdout', host: 'nope', payload: 'x' }),
        msg({ type: 'status', idx: 9, state: 'running' }),
        msg({ type: 'exit', host: 'nope', exit_code: 1 }),
      ],
      runState: 'queued',
      hosts: { web01: { state: 'queued', chunks: [] } },
      changed: [],
    },
    {
      name: 'status running sets the start once',
      msgs: [
        msg({ type: 'status', host: 'web01', state: 'connecting', at: t1 }),
        msg({ type: 'status', host: 'web01', state: 'running', at: t2 }),
      ],
      runState: 'running',
      hosts: { web01: { state: 'running', started: Date.parse(t1), finished: null } },
      changed: ['web01'],
    },
    {
      name: 'status takes its state from the payload when it has no state field',
      msgs: [msg({ type: 'status', host: 'web01', payload: 'running', at: t1 })],
      runState: 'running',
      hosts: { web01: { state: 'running', started: Date.parse(t1) } },
      changed: ['web01'],
    },
    {
      name: 'a final status sets the finish',
      msgs: [msg({ type: 'status', host: 'web02', state: 'unreachable', at: t2 })],
      runState: 'running',
      hosts: { web02: { state: 'unreachable', finished: Date.parse(t2) } },
      changed: ['web02'],
    },
    {
      name: 'queued again (a lost host retried) clears start, finish and exit',
      run: run({ state: 'running', hosts: [runHost(0, 'web01', { state: 'lost', exit_code: 255, started_at: t1, finished_at: t2 })] }),
      msgs: [msg({ type: 'status', host: 'web01', state: 'queued', at: t2 })],
      runState: 'running',
      hosts: { web01: { state: 'queued', started: null, finished: null, exit: null } },
      changed: ['web01'],
    },
    {
      name: 'exit sets state, code, signal and finish',
      msgs: [msg({ type: 'exit', host: 'web01', state: 'failed', exit_code: 143, signal: 'TERM', at: t2 })],
      runState: 'running',
      hosts: { web01: { state: 'failed', exit: 143, signal: 'TERM', finished: Date.parse(t2) } },
      changed: ['web01'],
    },
    {
      name: 'exit without state or time keeps the state and finishes now',
      run: run({ hosts: [runHost(0, 'web01', { state: 'running' })] }),
      msgs: [msg({ type: 'exit', host: 'web01' })],
      runState: 'running',
      hosts: { web01: { state: 'running', exit: null, signal: '', finished: now } },
      changed: ['web01'],
    },
    {
      name: 'a host error is kept and shown in its output',
      msgs: [msg({ type: 'error', host: 'web01', payload: 'dial: refused' })],
      runState: 'running',
      hosts: { web01: { error: 'dial: refused', chunks: ['\x1b[33m[dial: refused]\x1b[0m\n'], bytes: 0 } },
      changed: ['web01'],
    },
    {
      name: 'an error without a host is the run error',
      msgs: [msg({ type: 'error', payload: 'executor lost' })],
      runState: 'queued',
      hosts: { web01: { error: '' } },
      changed: [],
      error: 'executor lost',
    },
    {
      name: 'done gives the run its final state',
      run: run({ state: 'running' }),
      msgs: [msg({ type: 'exit', host: 'web01', state: 'ok', exit_code: 0, at: t2 }), msg({ type: 'done', state: 'succeeded' })],
      runState: 'succeeded',
      hosts: { web01: { state: 'ok', exit: 0 } },
      changed: ['web01'],
      done: true,
    },
    {
      name: 'done takes its state from the payload when it has no state field',
      msgs: [msg({ type: 'done', payload: 'canceled' })],
      runState: 'canceled',
      hosts: {},
      changed: [],
      done: true,
    },
    {
      name: 'a replayed transcript of a finished run leaves its final state',
      run: run({ state: 'failed' }),
      msgs: [msg({ type: 'status', host: 'web01', state: 'running', at: t1 }), msg({ type: 'stdout', host: 'web01', payload: 'a' })],
      runState: 'failed',
      hosts: { web01: { state: 'running', chunks: ['a'], bytes: 1 } },
      changed: ['web01'],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const m = runModel(c.run ?? run());
      const { a, names } = changedNames(m, c.msgs);
      expect(m.state).toBe(c.runState);
      for (const [name, want] of Object.entries(c.hosts)) expect(host(m.byName.get(name))).toMatchObject(want);
      expect(names.sort()).toEqual(c.changed);
      expect(a.done).toBe(c.done ?? false);
      expect(a.errorChanged).toBe(c.error !== undefined);
      if (c.error !== undefined) expect(m.error).toBe(c.error);
    });
  }

  it('reports each host once per batch with the output it received, in order', () => {
    const m = runModel(run());
    const a = applyMessages(m, [
      msg({ type: 'stdout', host: 'web01', payload: 'a' }),
      msg({ type: 'status', host: 'web02', state: 'running' }),
      msg({ type: 'stderr', host: 'web01', payload: 'b' }),
      msg({ type: 'error', host: 'web01', payload: 'c' }),
    ], now);
    expect(a.changed.size).toBe(2);
    expect(a.changed.get(m.byName.get('web01')!)).toEqual(['a', 'b', '\x1b[33m[c]\x1b[0m\n']);
    expect(a.changed.get(m.byName.get('web02')!)).toEqual([]);
  });

  it('accumulates over batches', () => {
    const m = runModel(run());
    applyMessages(m, [msg({ type: 'stdout', host: 'web01', payload: 'ab' })], now);
    const a = applyMessages(m, [msg({ type: 'stdout', host: 'web01', payload: 'cd' })], now);
    expect(m.byName.get('web01')).toMatchObject({ chunks: ['ab', 'cd'], bytes: 4, buffered: 4 });
    expect(a.changed.get(m.byName.get('web01')!)).toEqual(['cd']); // only the new output goes to the pane
  });

  it('drops the oldest output past maxBuffered but keeps counting bytes', () => {
    const m = runModel(run());
    const big = 'x'.repeat(maxBuffered / 2);
    applyMessages(m, [1, 2, 3].map(() => msg({ type: 'stdout', host: 'web01', payload: big })), now);
    const hm = m.byName.get('web01')!;
    expect(hm.chunks.length).toBe(2);
    expect(hm.buffered).toBe(maxBuffered);
    expect(hm.bytes).toBe(3 * big.length);
    expect(hm.trimmed).toBe(true);
  });

  it('keeps the last chunk even when it alone exceeds maxBuffered', () => {
    const m = runModel(run());
    applyMessages(m, [msg({ type: 'stdout', host: 'web01', payload: 'x'.repeat(maxBuffered + 1) })], now);
    const hm = m.byName.get('web01')!;
    expect(hm.chunks.length).toBe(1);
    expect(hm.trimmed).toBe(false);
  });
});

describe('applyFinal', () => {
  it('takes the server numbers of every known host', () => {
    const m = runModel(run({ state: 'running' }));
    applyMessages(m, [msg({ type: 'error', host: 'web02', payload: 'live error' }), msg({ type: 'done', state: 'failed' })], now);
    const updated = applyFinal(m, run({
      state: 'failed', error: 'max failures reached',
      hosts: [
        runHost(0, 'web01', { state: 'ok', exit_code: 0, duration_ms: 1200, output_bytes: 42 }),
        runHost(1, 'web02', { state: 'failed', exit_code: 2, signal: 'KILL', duration_ms: 800, output_bytes: 7 }),
        runHost(5, 'gone'),
      ],
    }));
    expect(updated.map((h) => h.name)).toEqual(['web01', 'web02']);
    expect(m.state).toBe('failed');
    expect(m.error).toBe('max failures reached');
    expect(m.byName.get('web01')).toMatchObject({ state: 'ok', exit: 0, signal: '', durationMS: 1200, bytes: 42, error: '' });
    expect(m.byName.get('web02')).toMatchObject({ state: 'failed', exit: 2, signal: 'KILL', durationMS: 800, bytes: 7, error: 'live error' });
  });

  it('keeps the live run error when the server has none', () => {
    const m = runModel(run());
    applyMessages(m, [msg({ type: 'error', payload: 'executor lost' })], now);
    applyFinal(m, run({ state: 'aborted' }));
    expect(m.error).toBe('executor lost');
  });
});

describe('stateCounts and rerunnable', () => {
  const cases: Array<{ name: string; state: RunState; hosts: string[]; counts: Record<string, number>; rerun: boolean }> = [
    { name: 'running', state: 'running', hosts: ['ok', 'failed', 'running'], counts: { ok: 1, failed: 1, running: 1 }, rerun: false },
    { name: 'finished, all ok', state: 'succeeded', hosts: ['ok', 'ok'], counts: { ok: 2 }, rerun: false },
    { name: 'finished with failures', state: 'failed', hosts: ['ok', 'timeout', 'failed'], counts: { ok: 1, timeout: 1, failed: 1 }, rerun: true },
    { name: 'canceled before a host started', state: 'canceled', hosts: ['canceled'], counts: { canceled: 1 }, rerun: true },
    { name: 'no hosts', state: 'failed', hosts: [], counts: {}, rerun: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const m = runModel(run({ state: c.state, hosts: c.hosts.map((s, i) => runHost(i, 'h' + i, { state: s as RunHost['state'] })) }));
      expect(stateCounts(m)).toEqual(c.counts);
      expect(rerunnable(m)).toBe(c.rerun);
    });
  }
});
