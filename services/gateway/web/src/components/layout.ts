// The frame around every page once logged in: navigation (only what the
// role may use), the user, language and theme, logout.
import { h, setText } from '../dom';
import { can, current } from '../session';
import type { Key } from '../i18n';
import { prefs } from './prefs';

interface NavItem {
  href: string;
  label: Key;
  route: string;
  action: string; // shown only when the role may do this
}

const items: NavItem[] = [
  { href: '/', label: 'nav.dashboard', route: 'dashboard', action: 'run.read' },
  { href: '/platforms', label: 'nav.platforms', route: 'platforms', action: 'platform.read' },
  { href: '/keys', label: 'nav.keys', route: 'keys', action: 'key.read' },
  { href: '/runs/new', label: 'nav.new_run', route: 'composer', action: 'run.create' },
  { href: '/runs', label: 'nav.runs', route: 'runs', action: 'run.read' },
  { href: '/audit', label: 'nav.audit', route: 'audit', action: 'audit.read' },
  { href: '/users', label: 'nav.users', route: 'users', action: 'user.manage' },
];

export interface Layout {
  el: HTMLElement;
  main: HTMLElement;
  setActive: (route: string) => void;
}

export function layout(onLogout: () => void): Layout {
  const me = current();
  const links = items
    .filter((i) => can(i.action))
    .map((i) => h('a', { href: i.href, 'data-link': true, 'data-route': i.route, id: 'nav-' + i.route, t: i.label }));
  const role = h('span', { class: 'role' });
  if (me) setText(role, ('role.' + me.user.role) as Key);
  const main = h('main', { id: 'main' });
  const el = h('div', { class: 'shell' },
    h('header', { class: 'topbar' },
      h('a', { href: '/', 'data-link': true, class: 'brand' }, 'testum'),
      h('nav', { class: 'nav' }, ...links),
      h('div', { class: 'user' },
        h('span', { class: 'username', id: 'current-user' }, me?.user.username ?? ''), role,
        prefs(),
        h('button', { type: 'button', id: 'logout', t: 'nav.logout', on: { click: onLogout } }))),
    main);
  return {
    el,
    main,
    setActive(route) {
      for (const a of links) a.classList.toggle('active', a.dataset.route === route);
    },
  };
}
