// The console's entry: session check, routing, page mounting.
import '@xterm/xterm/css/xterm.css';
import './styles.css';
import { api, configure } from './api';
import { applyLocale, h } from './dom';
import { onLocale, type Key } from './i18n';
import './theme';
import { navigate, start, type Route } from './router';
import { can, current, extend, requestSeen, setCurrent, setIdleHooks } from './session';
import { layout, type Layout } from './components/layout';
import { loginPage } from './components/login';
import { hideIdleWarning, showIdleWarning } from './components/idle-warning';
import type { Page } from './components/page';
import { pages } from './pages';

const app = document.getElementById('app') as HTMLElement;
let shell: Layout | null = null;
let page: Page | null = null;
let loginReason: Key | undefined;
let afterLogin = '/';

function message(id: string, key: Key): Page {
  return { el: h('section', { class: 'page', id }, h('h1', { t: key })) };
}

function render(r: Route): void {
  page?.destroy?.();
  page = null;
  if (!current()) {
    if (r.name !== 'login') {
      afterLogin = location.pathname + location.search;
      navigate('/login', true);
      return;
    }
    shell = null;
    page = loginPage(loggedIn, loginReason);
    loginReason = undefined;
    app.replaceChildren(page.el);
    return;
  }
  if (r.name === 'login') {
    navigate('/', true);
    return;
  }
  if (!shell) {
    shell = layout(logout);
    app.replaceChildren(shell.el);
  }
  shell.setActive(r.name);
  const def = pages[r.name];
  if (!def) page = message('page-notfound', 'page.not_found');
  else if (!can(def.action)) page = message('page-forbidden', 'page.forbidden');
  else page = def.make(r);
  shell.main.replaceChildren(page.el);
  window.scrollTo(0, 0);
}

async function loggedIn(): Promise<void> {
  setCurrent(await api.me());
  shell = null;
  const to = afterLogin.startsWith('/') && !afterLogin.startsWith('/login') ? afterLogin : '/';
  afterLogin = '/';
  navigate(to, true);
}

// ended returns to the login page, saying why.
function ended(reason: Key): void {
  if (!current()) return;
  hideIdleWarning();
  setCurrent(null);
  api.forget();
  loginReason = reason;
  navigate('/login');
}

async function logout(): Promise<void> {
  try {
    await api.logout();
  } catch {
    /* the session may be gone already */
  }
  ended('login.logged_out');
}

async function boot(): Promise<void> {
  configure({ unauthorized: () => ended('login.expired'), activity: requestSeen });
  setIdleHooks({
    warn: (s) => showIdleWarning(s, () => void extend().catch(() => {}), () => void logout()),
    expired: () => {
      void api.logout().catch(() => {});
      ended('login.idle');
    },
  });
  onLocale(() => applyLocale(document.body));
  try {
    setCurrent(await api.me());
  } catch {
    setCurrent(null);
  }
  start(render);
}

void boot();
