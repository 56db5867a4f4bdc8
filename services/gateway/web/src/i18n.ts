// Every string the console shows comes from the locale files; the choice
// is remembered in localStorage and applied in place (dom.ts applyLocale).
import { en } from './locales/en';
import { ru } from './locales/ru';

export type Key = keyof typeof en;
export type Args = Record<string, string | number>;
export type Locale = 'en' | 'ru';

const dictionaries: Record<Locale, Record<Key, string>> = { en, ru };
const storageKey = 'testum.locale';

let current: Locale = initial();
const listeners: Array<() => void> = [];

function initial(): Locale {
  const saved = localStorage.getItem(storageKey);
  if (saved === 'en' || saved === 'ru') return saved;
  return navigator.language.toLowerCase().startsWith('ru') ? 'ru' : 'en';
}

export function locale(): Locale {
  return current;
}

export function setLocale(l: Locale): void {
  current = l;
  localStorage.setItem(storageKey, l);
  document.documentElement.lang = l;
  for (const fn of listeners) fn();
}

export function onLocale(fn: () => void): void {
  listeners.push(fn);
}

export function t(key: Key, args?: Args): string {
  let s = dictionaries[current][key] ?? en[key] ?? key;
  if (args) s = s.replace(/\{(\w+)\}/g, (m, name: string) => (name in args ? String(args[name]) : m));
  return s;
}

// has reports whether key is a locale key (for values from the API, such as
// states, that have a translation).
export function has(key: string): key is Key {
  return key in en;
}

document.documentElement.lang = current;
