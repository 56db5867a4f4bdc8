// Small DOM helpers: the console builds its DOM with h() and keeps every
// visible string translatable (t / ph / tip props, see i18n.ts).
import { t, locale, type Key, type Args } from './i18n';

export type Child = Node | string | number | null | undefined | false;

export interface Props {
  [attr: string]: unknown;
  class?: string;
  t?: Key; // text content from the locale files
  targs?: Args;
  ph?: Key; // placeholder from the locale files
  tip?: Key; // title from the locale files
  on?: { [event: string]: (ev: Event) => void };
}

// attrText is an attribute's text (props other than t, targs, ph, tip and
// on carry strings and numbers).
function attrText(v: unknown): string {
  return typeof v === 'string' ? v : String(v);
}

// h creates an element. Attributes with value false/null/undefined are
// left out; true sets an empty attribute.
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props?: Props | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      switch (k) {
        case 't':
          setText(el, v as Key, props.targs);
          break;
        case 'targs':
          break;
        case 'ph':
          el.dataset.i18nPh = v as string;
          el.setAttribute('placeholder', t(v as Key));
          break;
        case 'tip':
          el.dataset.i18nTip = v as string;
          el.setAttribute('title', t(v as Key));
          break;
        case 'on':
          for (const [ev, fn] of Object.entries(v as Record<string, (e: Event) => void>)) el.addEventListener(ev, fn);
          break;
        case 'value':
          (el as unknown as HTMLInputElement).value = attrText(v);
          break;
        case 'checked':
          (el as unknown as HTMLInputElement).checked = Boolean(v);
          break;
        default:
          el.setAttribute(k, v === true ? '' : attrText(v));
      }
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

// setText shows a translated string in el and remembers the key, so that
// a language switch updates it in place (applyLocale).
export function setText(el: HTMLElement, key: Key, args?: Args): void {
  el.dataset.i18n = key;
  if (args) el.dataset.i18nArgs = JSON.stringify(args);
  else delete el.dataset.i18nArgs;
  el.textContent = t(key, args);
}

// applyLocale re-translates every marked element under root.
export function applyLocale(root: ParentNode): void {
  root.querySelectorAll<HTMLElement>('[data-i18n]').forEach((el) => {
    const args = el.dataset.i18nArgs ? (JSON.parse(el.dataset.i18nArgs) as Args) : undefined;
    el.textContent = t(el.dataset.i18n as Key, args);
  });
  root.querySelectorAll<HTMLElement>('[data-i18n-ph]').forEach((el) => el.setAttribute('placeholder', t(el.dataset.i18nPh as Key)));
  root.querySelectorAll<HTMLElement>('[data-i18n-tip]').forEach((el) => el.setAttribute('title', t(el.dataset.i18nTip as Key)));
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

// field wraps a labelled form control.
export function field(label: Key, control: HTMLElement, hint?: Key): HTMLElement {
  return h('label', { class: 'field' }, h('span', { class: 'field-label', t: label }), control, hint ? h('small', { class: 'hint', t: hint }) : null);
}

export function option(value: string, label: Key | null, text?: string): HTMLOptionElement {
  const o = h('option', { value });
  if (label) setText(o, label);
  else o.textContent = text ?? value;
  return o;
}

export function fmtTime(s: string | null | undefined): string {
  if (!s) return '—';
  const d = new Date(s);
  return isNaN(d.getTime()) ? s : d.toLocaleString(locale());
}

export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || ms < 0) return '—';
  if (ms < 1000) return t('unit.ms', { n: Math.round(ms) });
  const s = ms / 1000;
  if (s < 60) return t('unit.s', { n: s.toFixed(1) });
  const m = Math.floor(s / 60);
  return t('unit.m_s', { m, s: Math.round(s - m * 60) });
}
