// The live transcript of a run over the WebSocket: messages are queued and
// handed over once per animation frame (so 500 hosts streaming cost one DOM
// update per frame, not one per message); a dropped connection resumes with
// ?since=<last seq received>, and the seq check drops anything seen twice.
import { api, type WSMessage } from '../api';

export type Connection = 'connecting' | 'live' | 'reconnecting' | 'finished';

export interface StreamHandlers {
  batch: (msgs: WSMessage[]) => void;
  connection: (c: Connection) => void;
  sessionEnded: () => void;
}

// StreamSocket is the part of a WebSocket the stream uses.
export type StreamSocket = Pick<WebSocket, 'onopen' | 'onmessage' | 'onclose' | 'close'>;

export type Dial = (url: string) => StreamSocket;

// maxPerFrame bounds the work of one frame when a long transcript replays.
const maxPerFrame = 4000;

export class RunStream {
  private ws: StreamSocket | null = null;
  private lastSeq = 0;
  private queue: WSMessage[] = [];
  private scheduled = false;
  private finished = false;
  private stopped = false;
  private failures = 0;
  private retryTimer = 0;

  constructor(
    private readonly runID: string,
    private readonly on: StreamHandlers,
    private readonly dial: Dial = (url) => new WebSocket(url),
  ) {}

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    this.ws?.close();
    this.ws = null;
  }

  // lastSeen is the cursor a reconnect resumes from.
  get lastSeen(): number {
    return this.lastSeq;
  }

  // drop closes the socket as a network failure would (used by tests and
  // by the "reconnect" button).
  drop(): void {
    this.ws?.close(4000, 'client drop');
  }

  private connect(): void {
    if (this.stopped || this.finished) return;
    this.on.connection(this.failures > 0 ? 'reconnecting' : 'connecting');
    const ws = this.dial(api.wsURL(this.runID, this.lastSeq));
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let m: WSMessage;
      try {
        m = JSON.parse(ev.data) as WSMessage;
      } catch {
        return;
      }
      this.failures = 0;
      // "done" may repeat the last seq (the server synthesizes it when the
      // stream no longer holds the real one); anything else is strictly new.
      if (m.type !== 'done') {
        if (m.seq <= this.lastSeq) return;
        this.lastSeq = m.seq;
      } else {
        if (this.finished) return;
        this.finished = true;
      }
      this.queue.push(m);
      this.schedule();
    };
    ws.onopen = () => this.on.connection('live');
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (this.finished) {
        this.on.connection('finished');
        return;
      }
      if (ev.code === 1008) {
        this.on.sessionEnded();
        return;
      }
      this.failures++;
      this.on.connection('reconnecting');
      const delay = Math.min(10_000, 250 * 2 ** Math.min(this.failures, 6));
      this.retryTimer = window.setTimeout(() => this.connect(), delay);
    };
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // A hidden tab gets no animation frames: keep draining on a timer.
    const run = () => this.flush();
    if (document.hidden) window.setTimeout(run, 250);
    else requestAnimationFrame(run);
  }

  private flush(): void {
    this.scheduled = false;
    if (this.stopped) return;
    const take = this.queue.length > maxPerFrame ? this.queue.splice(0, maxPerFrame) : this.queue.splice(0);
    if (take.length) this.on.batch(take);
    if (this.queue.length) this.schedule();
  }
}
