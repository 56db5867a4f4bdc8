// Notices: a transient message at the corner, and an inline error box.
import { h, setText } from '../dom';
import { t, type Key, type Args } from '../i18n';
import { ApiError } from '../api';

let box: HTMLElement | null = null;

export function notify(key: Key, args?: Args, kind: 'ok' | 'error' = 'ok'): void {
  if (!box) {
    box = h('div', { class: 'notices', role: 'status', 'aria-live': 'polite' });
    document.body.appendChild(box);
  }
  const n = h('div', { class: 'notice ' + kind, t: key, targs: args });
  box.appendChild(n);
  window.setTimeout(() => n.remove(), kind === 'error' ? 8000 : 4000);
}

// errorText renders an API error: the server's message is shown as is
// (it names what was wrong), network failures get a translated text.
export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 0) return t('error.network');
    if (e.status === 403) return t('error.forbidden', { message: e.message });
    return e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

// ErrorBox is an inline error line that a form or page shows.
export function errorBox(): { el: HTMLElement; show: (e: unknown) => void; hide: () => void } {
  const el = h('div', { class: 'error-box', role: 'alert', hidden: true });
  return {
    el,
    show(e: unknown) {
      delete el.dataset.i18n;
      el.textContent = errorText(e);
      el.hidden = false;
    },
    hide() {
      el.hidden = true;
      el.textContent = '';
    },
  };
}

export function showKey(el: HTMLElement, key: Key, args?: Args): void {
  setText(el, key, args);
  el.hidden = false;
}
