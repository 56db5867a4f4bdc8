// A run, host or platform state shown as a coloured, translated badge.
import { h, setText } from '../dom';
import { has } from '../i18n';

export function stateBadge(state: string): HTMLElement {
  const el = h('span', { class: 'badge' });
  setBadge(el, state);
  return el;
}

export function setBadge(el: HTMLElement, state: string): void {
  el.dataset.state = state;
  el.className = 'badge state-' + state;
  const key = 'state.' + state;
  if (has(key)) setText(el, key);
  else {
    delete el.dataset.i18n;
    el.textContent = state;
  }
}
