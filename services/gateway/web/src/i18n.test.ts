// @vitest-environment happy-dom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { en } from './locales/en';
import { ru } from './locales/ru';

type I18n = typeof import('./i18n');

// load imports i18n afresh, so that it reads localStorage and the browser
// language again.
async function load(): Promise<I18n> {
  vi.resetModules();
  return import('./i18n');
}

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

beforeEach(() => localStorage.clear());
afterEach(() => {
  vi.restoreAllMocks();
  vi.doUnmock('./locales/ru');
});

describe('locales', () => {
  const locales: Record<string, Record<string, string>> = { en, ru };

  for (const [name, dict] of Object.entries(locales)) {
    it(`${name} has every key of en and no other`, () => {
      expect(Object.keys(dict).sort()).toEqual(Object.keys(en).sort());
    });

    it(`${name} has no empty string`, () => {
      expect(Object.entries(dict).filter(([, v]) => v.trim() === '').map(([k]) => k)).toEqual([]);
    });

    it(`${name} uses the placeholders of en`, () => {
      const wrong = Object.keys(en).filter((k) => placeholders(dict[k] ?? '').join() !== placeholders(en[k as keyof typeof en]).join());
      expect(wrong).toEqual([]);
    });
  }
});

describe('t', () => {
  it('interpolates named arguments, numbers too, and leaves unknown ones', async () => {
    const { t, setLocale } = await load();
    setLocale('en');
    expect(t('error.forbidden', { message: 'run.create' })).toBe('Not allowed: run.create');
    expect(t('unit.s', { n: 30 })).toBe(en['unit.s'].replace('{n}', '30'));
    expect(t('error.forbidden')).toBe('Not allowed: {message}');
    expect(t('error.forbidden', { other: 'x' })).toBe('Not allowed: {message}');
  });

  it('interpolates every occurrence and does not interpolate twice', async () => {
    vi.doMock('./locales/ru', () => ({ ru: { 'error.forbidden': '{message} / {message}' } }));
    const { t, setLocale } = await load();
    setLocale('ru');
    expect(t('error.forbidden', { message: '{message}' })).toBe('{message} / {message}');
    expect(t('error.forbidden', { message: 'a' })).toBe('a / a');
  });

  it('translates into the chosen locale', async () => {
    const { t, setLocale } = await load();
    setLocale('ru');
    expect(t('common.save')).toBe(ru['common.save']);
    setLocale('en');
    expect(t('common.save')).toBe(en['common.save']);
  });

  it('falls back to English for a key the locale lacks, then to the key', async () => {
    vi.doMock('./locales/ru', () => ({ ru: { 'common.close': 'Закрыть' } }));
    const { t, setLocale } = await load();
    setLocale('ru');
    expect(t('common.close')).toBe('Закрыть');
    expect(t('common.save')).toBe(en['common.save']);
    expect(t('no.such.key' as keyof typeof en)).toBe('no.such.key');
  });
});

describe('locale choice', () => {
  it('follows the browser language at first', async () => {
    vi.spyOn(navigator, 'language', 'get').mockReturnValue('ru-RU');
    expect((await load()).locale()).toBe('ru');
    expect(document.documentElement.lang).toBe('ru');
    vi.spyOn(navigator, 'language', 'get').mockReturnValue('de-DE');
    expect((await load()).locale()).toBe('en');
  });

  it('remembers the choice over the browser language', async () => {
    vi.spyOn(navigator, 'language', 'get').mockReturnValue('en-US');
    const first = await load();
    first.setLocale('ru');
    expect(document.documentElement.lang).toBe('ru');
    expect((await load()).locale()).toBe('ru');
  });

  it('ignores a saved value that is no locale', async () => {
    vi.spyOn(navigator, 'language', 'get').mockReturnValue('en-US');
    localStorage.setItem('testum.locale', 'xx');
    expect((await load()).locale()).toBe('en');
  });

  it('tells the listeners of a change', async () => {
    const { onLocale, setLocale, locale } = await load();
    const seen: string[] = [];
    onLocale(() => seen.push(locale()));
    setLocale('ru');
    setLocale('en');
    expect(seen).toEqual(['ru', 'en']);
  });

  it('has knows the locale keys', async () => {
    const { has } = await load();
    expect(has('state.running')).toBe(true);
    expect(has('state.no_such_state')).toBe(false);
  });
});
