// The console's pages by route name, each with the action of the
// permission table it needs (main.ts mounts them; login is its own case).
import type { Route } from './router';
import type { Page } from './components/page';
import { dashboardPage } from './components/dashboard';
import { platformsPage } from './components/platforms';
import { keysPage } from './components/keys';
import { composerPage } from './components/composer';
import { runPage } from './components/run-view';
import { runsPage } from './components/runs';
import { auditPage } from './components/audit';
import { usersPage } from './components/users';

export interface PageDef {
  action: string;
  make: (r: Route) => Page;
}

export const pages: Record<string, PageDef> = {
  dashboard: { action: 'run.read', make: () => dashboardPage() },
  platforms: { action: 'platform.read', make: (r) => platformsPage(r) },
  keys: { action: 'key.read', make: () => keysPage() },
  composer: { action: 'run.create', make: (r) => composerPage(r) },
  run: { action: 'run.read', make: (r) => runPage(r.params.id) },
  runs: { action: 'run.read', make: (r) => runsPage(r) },
  audit: { action: 'audit.read', make: () => auditPage() },
  users: { action: 'user.manage', make: () => usersPage() },
};
