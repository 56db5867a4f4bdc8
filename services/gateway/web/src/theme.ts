// Light and dark themes: "system" (the default) follows the OS; the choice
// is remembered in localStorage. The effective theme is data-theme on <html>.
export type ThemeChoice = 'system' | 'light' | 'dark';
export type Theme = 'light' | 'dark';

const storageKey = 'testum.theme';
const media = window.matchMedia('(prefers-color-scheme: dark)');
const listeners: Array<(t: Theme) => void> = [];

let choice: ThemeChoice = (() => {
  const v = localStorage.getItem(storageKey);
  return v === 'light' || v === 'dark' ? v : 'system';
})();

export function themeChoice(): ThemeChoice {
  return choice;
}

export function theme(): Theme {
  if (choice === 'system') return media.matches ? 'dark' : 'light';
  return choice;
}

function apply(): void {
  const th = theme();
  document.documentElement.dataset.theme = th;
  for (const fn of listeners) fn(th);
}

export function setTheme(c: ThemeChoice): void {
  choice = c;
  if (c === 'system') localStorage.removeItem(storageKey);
  else localStorage.setItem(storageKey, c);
  apply();
}

// onTheme calls fn on every change of the effective theme; the result
// unsubscribes.
export function onTheme(fn: (t: Theme) => void): () => void {
  listeners.push(fn);
  return () => {
    const i = listeners.indexOf(fn);
    if (i >= 0) listeners.splice(i, 1);
  };
}

media.addEventListener('change', () => {
  if (choice === 'system') apply();
});
apply();
