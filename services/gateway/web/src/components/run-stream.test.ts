// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { WSMessage } from '../api';
import { RunStream, type Connection, type StreamSocket } from './run-stream';

const runID = '7d3c1f0e-0000-4000-8000-000000000001';

// FakeSocket stands in for the browser's WebSocket: the test opens it,
// delivers messages and closes it as the server or the network would.
class FakeSocket implements StreamSocket {
  onopen: WebSocket['onopen'] = null;
  onmessage: WebSocket['onmessage'] = null;
  onclose: WebSocket['onclose'] = null;
  closed: { code?: number; reason?: string } | null = null;

  constructor(readonly url: string) {}

  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
  }

  open(): void {
    this.onopen?.call(this as unknown as WebSocket, new Event('open'));
  }

  send(...msgs: Array<Partial<WSMessage> | string>): void {
    for (const m of msgs) {
      const data = typeof m === 'string' ? m : JSON.stringify({ payload: '', ...m });
      this.onmessage?.call(this as unknown as WebSocket, { data } as MessageEvent);
    }
  }

  drop(code = 1006): void {
    this.onclose?.call(this as unknown as WebSocket, { code } as CloseEvent);
  }
}

let sockets: FakeSocket[];
let frames: Array<() => void>;
let batches: WSMessage[][];
let conns: Connection[];
let ended: number;

function stream(): RunStream {
  const s = new RunStream(runID, {
    batch: (m) => batches.push(m),
    connection: (c) => conns.push(c),
    sessionEnded: () => ended++,
  }, (url) => {
    const ws = new FakeSocket(url);
    sockets.push(ws);
    return ws;
  });
  s.start();
  return s;
}

const last = () => sockets[sockets.length - 1];
const since = (ws: FakeSocket) => new URL(ws.url).searchParams.get('since');

// frame runs the animation frames requested so far (and only those).
function frame(): void {
  const fs = frames;
  frames = [];
  for (const f of fs) f();
}

const seqs = (b: WSMessage[]) => b.map((m) => m.type === 'done' ? 'done' : m.seq);

beforeEach(() => {
  sockets = [];
  frames = [];
  batches = [];
  conns = [];
  ended = 0;
  vi.useFakeTimers();
  vi.stubGlobal('requestAnimationFrame', (f: () => void) => {
    frames.push(f);
    return frames.length;
  });
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe('RunStream', () => {
  it('connects to the run transcript from the start', () => {
    stream();
    expect(sockets.length).toBe(1);
    expect(new URL(last().url).pathname).toBe('/ws/tasks/' + runID);
    expect(since(last())).toBeNull();
    expect(conns).toEqual(['connecting']);
    last().open();
    expect(conns).toEqual(['connecting', 'live']);
  });

  it('hands over the messages of a frame as one batch', () => {
    stream();
    last().open();
    last().send({ type: 'stdout', seq: 1, host: 'a' }, { type: 'status', seq: 2, host: 'b' }, { type: 'stdout', seq: 3, host: 'a' });
    expect(batches).toEqual([]); // nothing before the frame
    expect(frames.length).toBe(1); // one frame asked for, not one per message
    frame();
    expect(batches.map(seqs)).toEqual([[1, 2, 3]]);
    last().send({ type: 'stdout', seq: 4 });
    frame();
    expect(batches.map(seqs)).toEqual([[1, 2, 3], [4]]);
    frame();
    expect(batches.length).toBe(2); // no empty batches
  });

  it('splits a long replay over several frames', () => {
    stream();
    const n = 9000;
    for (let i = 1; i <= n; i++) last().send({ type: 'stdout', seq: i });
    while (frames.length) frame();
    expect(batches.map((b) => b.length)).toEqual([4000, 4000, 1000]);
    expect(batches.flat().map((m) => m.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  });

  it('drains on a timer while the tab is hidden', () => {
    vi.spyOn(document, 'hidden', 'get').mockReturnValue(true);
    stream();
    last().send({ type: 'stdout', seq: 1 });
    expect(frames.length).toBe(0);
    vi.runOnlyPendingTimers();
    expect(batches.map(seqs)).toEqual([[1]]);
  });

  it('drops messages it has seen', () => {
    stream();
    last().send({ type: 'stdout', seq: 1 }, { type: 'stdout', seq: 2 }, { type: 'stdout', seq: 2 }, { type: 'stdout', seq: 1 }, { type: 'stdout', seq: 5 }, { type: 'stdout', seq: 4 });
    frame();
    expect(batches.map(seqs)).toEqual([[1, 2, 5]]);
  });

  it('takes one done, even when it repeats the last seq', () => {
    stream();
    last().send({ type: 'exit', seq: 7 }, { type: 'done', seq: 7, state: 'succeeded' }, { type: 'done', seq: 8, state: 'succeeded' });
    frame();
    expect(batches.map(seqs)).toEqual([[7, 'done']]);
  });

  it('ignores frames that are not JSON text', () => {
    stream();
    last().send('not json', { type: 'stdout', seq: 1 });
    last().onmessage?.call(last() as unknown as WebSocket, { data: new ArrayBuffer(2) } as MessageEvent);
    frame();
    expect(batches.map(seqs)).toEqual([[1]]);
  });

  it('resumes after a dropped connection from the last seq and skips the replay', () => {
    stream();
    last().open();
    last().send({ type: 'stdout', seq: 1 }, { type: 'stdout', seq: 2 }, { type: 'status', seq: 3 });
    frame();
    last().drop();
    expect(conns.at(-1)).toBe('reconnecting');
    expect(sockets.length).toBe(1); // not before the back-off
    vi.runOnlyPendingTimers();
    expect(sockets.length).toBe(2);
    expect(since(last())).toBe('3');
    last().open();
    expect(conns.at(-1)).toBe('live');
    // The server may replay what the client already has.
    last().send({ type: 'status', seq: 3 }, { type: 'stdout', seq: 4 }, { type: 'done', seq: 4, state: 'failed' });
    frame();
    expect(batches.map(seqs)).toEqual([[1, 2, 3], [4, 'done']]);
  });

  it('keeps retrying while the gateway is away, from the same seq', () => {
    stream();
    last().send({ type: 'stdout', seq: 5 });
    for (let i = 0; i < 3; i++) {
      last().drop();
      vi.runOnlyPendingTimers();
    }
    expect(sockets.length).toBe(4);
    expect(sockets.slice(1).map(since)).toEqual(['5', '5', '5']);
    expect(conns).toEqual(['connecting', 'reconnecting', 'reconnecting', 'reconnecting', 'reconnecting', 'reconnecting', 'reconnecting']);
  });

  it('does not reconnect once the run is done', () => {
    stream();
    last().send({ type: 'done', seq: 1, state: 'succeeded' });
    last().drop(1000);
    vi.runOnlyPendingTimers();
    expect(sockets.length).toBe(1);
    expect(conns.at(-1)).toBe('finished');
  });

  it('reports an ended session instead of reconnecting', () => {
    stream();
    last().drop(1008);
    vi.runOnlyPendingTimers();
    expect(sockets.length).toBe(1);
    expect(ended).toBe(1);
  });

  it('stops: closes the socket, delivers nothing more and does not reconnect', () => {
    const s = stream();
    last().send({ type: 'stdout', seq: 1 });
    s.stop();
    expect(last().closed).not.toBeNull();
    frame();
    last().drop();
    vi.runOnlyPendingTimers();
    expect(batches).toEqual([]);
    expect(sockets.length).toBe(1);
  });

  it('drop closes the socket as a network failure would', () => {
    const s = stream();
    last().send({ type: 'stdout', seq: 2 });
    s.drop();
    expect(last().closed).toEqual({ code: 4000, reason: 'client drop' });
    expect(s.lastSeen).toBe(2);
  });
});
