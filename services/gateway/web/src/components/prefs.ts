// The language and theme switches, shown in the header and on the login page.
import { h, option } from '../dom';
import { locale, setLocale, type Locale } from '../i18n';
import { themeChoice, setTheme, type ThemeChoice } from '../theme';

export function prefs(): HTMLElement {
  const lang = h('select', { id: 'lang-select', tip: 'prefs.language', 'aria-label': 'language' },
    option('en', null, 'English'), option('ru', null, 'Русский'));
  lang.value = locale();
  lang.addEventListener('change', () => setLocale(lang.value as Locale));
  const theme = h('select', { id: 'theme-select', tip: 'prefs.theme', 'aria-label': 'theme' },
    option('system', 'prefs.theme_system'), option('light', 'prefs.theme_light'), option('dark', 'prefs.theme_dark'));
  theme.value = themeChoice();
  theme.addEventListener('change', () => setTheme(theme.value as ThemeChoice));
  return h('div', { class: 'prefs' }, lang, theme);
}
