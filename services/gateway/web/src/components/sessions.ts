// Sessions (super_admin): who is logged in from where; end any session.
import { h, fmtTime } from '../dom';
import { api } from '../api';
import { current } from '../session';
import { errorBox } from './notice';
import { stateBadge } from './state-badge';

export function sessionsCard(): HTMLElement {
  const err = errorBox();
  const body = h('tbody', { id: 'session-rows' });
  const all = h('input', { type: 'checkbox', id: 'sessions-all' });
  all.addEventListener('change', () => void load());
  async function load(): Promise<void> {
    err.hide();
    try {
      const ss = await api.sessions({ all: all.checked ? 'true' : undefined, limit: 500 });
      body.replaceChildren(...ss.items.map((s) => h('tr', { 'data-session': s.id },
        h('td', null, s.username), h('td', null, stateBadge(s.active ? 'active' : 'ended')), h('td', { class: 'mono' }, s.ip), h('td', null, fmtTime(s.created_at)),
        h('td', null, fmtTime(s.last_activity)), h('td', { class: 'small muted' }, s.end_reason || s.user_agent),
        h('td', null, s.active && s.id !== current()?.session_id ? h('button', { type: 'button', class: 'danger', t: 'sessions.end', on: { click: async () => {
          try {
            await api.sessionDelete(s.id);
            void load();
          } catch (e) {
            err.show(e);
          }
        } } }) : null))));
    } catch (e) {
      err.show(e);
    }
  }
  void load();
  return h('div', { class: 'card', id: 'sessions' }, h('h2', null, h('span', { t: 'sessions.title' })),
    h('label', { class: 'check' }, all, h('span', { t: 'sessions.show_ended' })), err.el,
    h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', { t: 'login.username' }), h('th', { t: 'runs.state' }), h('th', { t: 'au.ip' }),
      h('th', { t: 'sessions.started' }), h('th', { t: 'sessions.last_activity' }), h('th', null), h('th', null))), body));
}
