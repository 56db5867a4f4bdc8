// A modal dialog on the native <dialog> element.
import { h, type Child } from '../dom';
import type { Key } from '../i18n';

export interface Dialog {
  el: HTMLDialogElement;
  body: HTMLElement;
  close: () => void;
}

export function openDialog(title: Key, id: string, ...content: Child[]): Dialog {
  const body = h('div', { class: 'dialog-body' }, ...content);
  const el = h('dialog', { class: 'dialog', id },
    h('header', null, h('h2', { t: title }), h('button', { class: 'icon', type: 'button', tip: 'common.close', 'aria-label': 'close', on: { click: () => close() } }, '×')),
    body);
  const close = () => {
    el.close();
    el.remove();
  };
  el.addEventListener('cancel', () => el.remove());
  document.body.appendChild(el);
  el.showModal();
  return { el, body, close };
}

// confirmDialog asks a yes/no question; resolves true on yes.
export function confirmDialog(question: Key, args?: Record<string, string | number>): Promise<boolean> {
  return new Promise((resolve) => {
    const d = openDialog('common.confirm', 'confirm-dialog',
      h('p', { t: question, targs: args }),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger', id: 'confirm-yes', t: 'common.yes', on: { click: () => { d.close(); resolve(true); } } }),
        h('button', { type: 'button', id: 'confirm-no', t: 'common.no', on: { click: () => { d.close(); resolve(false); } } })));
    d.el.addEventListener('close', () => resolve(false));
  });
}
