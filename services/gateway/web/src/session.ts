// Who is logged in, what they may do, and the idle logout: the server ends
// a session after idle_timeout_seconds without a request; the console
// counts the same time from the last request, touches the session while
// the user is active, warns a minute before the end and then logs out.
import { api, type Me } from './api';

let me: Me | null = null;
let lastRequest = Date.now();
let lastInput = Date.now();
let warnTimer = 0;
let endTimer = 0;

type Hooks = { warn: (secondsLeft: number) => void; expired: () => void };
let hooks: Hooks = { warn: () => {}, expired: () => {} };

export function current(): Me | null {
  return me;
}

export function setCurrent(m: Me | null): void {
  me = m;
  if (m) schedule();
  else stop();
}

// can reports whether the user's role allows an action of the permission
// table (libs/auth/permissions.go); the console offers nothing else.
export function can(action: string): boolean {
  return !!me && me.permissions.includes(action);
}

export function setIdleHooks(h: Hooks): void {
  hooks = h;
}

function idleMs(): number {
  return (me?.idle_timeout_seconds ?? 900) * 1000;
}

// requestSeen is called for every request that reached the server.
export function requestSeen(): void {
  lastRequest = Date.now();
  if (me) schedule();
}

function stop(): void {
  window.clearTimeout(warnTimer);
  window.clearTimeout(endTimer);
}

function schedule(): void {
  stop();
  const idle = idleMs();
  const warnIn = idle - 60_000 - (Date.now() - lastRequest);
  warnTimer = window.setTimeout(() => hooks.warn(Math.max(0, Math.round((lastRequest + idle - Date.now()) / 1000))), Math.max(0, warnIn));
  endTimer = window.setTimeout(() => hooks.expired(), Math.max(0, lastRequest + idle - Date.now()));
}

// extend touches the session (a request counts as activity).
export async function extend(): Promise<void> {
  await api.me();
}

// User input keeps the session alive: at most one touch a minute while
// someone is at the keyboard, none while nobody is.
function input(): void {
  lastInput = Date.now();
  if (me && lastInput - lastRequest > 60_000 && lastInput - lastRequest < idleMs() - 60_000) {
    lastRequest = lastInput; // no second touch while this one is in flight
    void api.me().catch(() => {});
  }
}
for (const ev of ['keydown', 'pointerdown', 'wheel']) window.addEventListener(ev, input, { passive: true, capture: true });
