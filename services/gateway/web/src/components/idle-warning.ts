// The warning a minute before the idle logout, with a countdown.
import { h, setText } from '../dom';
import { openDialog, type Dialog } from './dialog';

let open: { d: Dialog; timer: number } | null = null;

export function showIdleWarning(secondsLeft: number, stay: () => void, logout: () => void): void {
  hideIdleWarning();
  const text = h('p', { id: 'idle-countdown' });
  let left = secondsLeft;
  const tick = () => setText(text, 'idle.warning', { seconds: Math.max(0, left) });
  tick();
  const d = openDialog('idle.title', 'idle-warning', text,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'primary', id: 'idle-stay', t: 'idle.stay', on: { click: () => { hideIdleWarning(); stay(); } } }),
      h('button', { type: 'button', id: 'idle-logout', t: 'nav.logout', on: { click: () => { hideIdleWarning(); logout(); } } })));
  const timer = window.setInterval(() => {
    left--;
    tick();
  }, 1000);
  open = { d, timer };
}

export function hideIdleWarning(): void {
  if (!open) return;
  window.clearInterval(open.timer);
  open.d.close();
  open = null;
}
