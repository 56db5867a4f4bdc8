// The typed client of testum's REST API and WebSocket: the only module that
// speaks HTTP. The session is the HttpOnly cookie; the CSRF token of the
// login is kept in memory (and read back from the testum_csrf cookie after
// a reload) and sent as X-CSRF-Token on every state-changing request.

export interface User {
  id: number;
  username: string;
  role: Role;
  created_at: string;
  key_changed_at: string;
  last_login_at: string | null;
}
export type Role = 'admin' | 'extended_admin' | 'super_admin';
export const roles: Role[] = ['admin', 'extended_admin', 'super_admin'];

export interface LoginResponse {
  access_token: string;
  token_type: string;
  expires_at: string;
  csrf_token: string;
  user: User;
}

export interface Me {
  user: User;
  session_id: string;
  permissions: string[];
  idle_timeout_seconds: number;
}

export interface Platform {
  id: number;
  name: string;
  host: string;
  port: number;
  username: string;
  auth_method: string;
  credential_id: number | null;
  labels: Record<string, string>;
  jump_platform_id: number | null;
  host_key_policy: string;
  host_key_fingerprint: string;
  offered_host_key_fingerprint?: string;
  state: string;
  state_detail?: string;
  last_contact_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface PlatformRequest {
  name: string;
  host: string;
  port?: number;
  username: string;
  auth_method: string;
  password?: string;
  private_key?: string;
  passphrase?: string;
  credential_id?: number;
  labels?: Record<string, string> | string;
  jump_platform_id?: number;
  host_key_policy?: string;
}

export interface TestResult {
  ok: boolean;
  state: string;
  message: string;
  host_key_fingerprint?: string;
  pinned?: boolean;
  elapsed_ms: number;
}

export interface HostKeyInfo {
  policy: string;
  pinned?: string;
  pinned_fingerprint?: string;
  offered?: string;
  offered_fingerprint?: string;
  offered_at?: string;
}

export interface ImportRequest {
  format: string;
  content: string;
  username: string;
  auth_method: string;
  password?: string;
  private_key?: string;
  credential_id?: number;
  labels?: Record<string, string>;
}
export interface ImportItem {
  name: string;
  line?: number;
  result: 'created' | 'skipped' | 'rejected';
  reason?: string;
  platform_id?: number;
}

export interface Credential {
  id: number;
  name: string;
  kind: string;
  has_passphrase: boolean;
  public_key: string;
  fingerprint: string;
  created_at: string;
}

export interface SSHKey {
  id: number;
  name: string;
  public_key: string;
  fingerprint: string;
  created_by: string;
  created_at: string;
}

export interface Targets {
  platform_ids?: number[];
  labels?: string;
  hosts?: string;
}

export interface Script {
  interpreter?: string;
  body: string;
  args?: string[];
}

export interface RunRequest {
  command?: string;
  script?: Script;
  targets: Targets;
  parallelism?: number;
  timeout?: number;
  batch?: string | number;
  max_failures?: string | number;
}

export interface RunCreated {
  id: string;
  task_id: string;
  state: string;
  hosts: number;
}

export interface Preview {
  count: number;
  hosts: string;
  names: string[];
}

export interface RunHost {
  idx: number;
  platform_id: number | null;
  name: string;
  address: string;
  state: string;
  exit_code: number | null;
  signal?: string;
  error?: string;
  attempt: number;
  executor?: string;
  output_bytes: number;
  truncated: boolean;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
}

export interface Run {
  id: string;
  state: string;
  kind: string;
  command: string;
  script?: Script;
  targets: Record<string, unknown>;
  parallelism: number;
  timeout: number;
  batch?: string;
  max_failures?: string;
  host_count: number;
  counts?: Record<string, number>;
  created_by: string;
  parent_run_id: string | null;
  abort_reason?: string;
  error?: string;
  cancel_requested: boolean;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  hosts?: RunHost[];
}

export interface SummaryGroup {
  hosts: string;
  names: string[];
  count: number;
  state: string;
  exit_code: number | null;
  digest: string;
  bytes: number;
  output?: string;
}

export interface Executor {
  id: string;
  hostname: string;
  pid: number;
  slots: number;
  started_at: string;
  heartbeat_at: string;
}

export interface Session {
  id: string;
  user_id: number;
  username: string;
  role: string;
  active: boolean;
  created_at: string;
  last_activity: string;
  expires_at: string;
  ended_at?: string;
  end_reason?: string;
  ip: string;
  user_agent: string;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor_id: number | null;
  actor: string;
  action: string;
  target: string;
  details: Record<string, unknown> | null;
  ip: string;
  outcome: string;
}

// WSMessage is one message of /ws/tasks/{run}.
export interface WSMessage {
  type: 'stdout' | 'stderr' | 'status' | 'exit' | 'error' | 'done';
  host?: string;
  seq: number;
  payload: string;
  encoding?: 'base64';
  idx?: number;
  state?: string;
  exit_code?: number;
  signal?: string;
  at?: string;
}

export interface Page<T> {
  items: T[];
  total: number;
}

export type Query = Record<string, string | number | boolean | undefined | null>;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf = '';
let onUnauthorized: () => void = () => {};
let onActivity: () => void = () => {};

// configure sets what happens when the session is gone (401) and when a
// request reached the server (which counts as session activity).
export function configure(opts: { unauthorized: () => void; activity: () => void }): void {
  onUnauthorized = opts.unauthorized;
  onActivity = opts.activity;
}

function csrfToken(): string {
  if (csrf) return csrf;
  const m = document.cookie.match(/(?:^|;\s*)testum_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : '';
}

function qs(q?: Query): string {
  if (!q) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? '?' + s : '';
}

async function send(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken();
  let resp: Response;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, e instanceof Error ? e.message : String(e));
  }
  if (resp.status === 401 && path !== '/api/auth/login') onUnauthorized();
  else onActivity(); // the server saw the request: the session was touched
  if (!resp.ok) {
    let msg = resp.statusText;
    try {
      const j = (await resp.json()) as { error?: string };
      if (j.error) msg = j.error;
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, msg);
  }
  return resp;
}

async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const resp = await send(method, path, body);
  if (resp.status === 204) return undefined as T;
  return (await resp.json()) as T;
}

async function list<T>(path: string, q?: Query): Promise<Page<T>> {
  const resp = await send('GET', path + qs(q));
  const items = (await resp.json()) as T[];
  return { items, total: Number(resp.headers.get('X-Total-Count') ?? items.length) };
}

const enc = encodeURIComponent;

export const api = {
  async login(username: string, password: string): Promise<LoginResponse> {
    const r = await json<LoginResponse>('POST', '/api/auth/login', { username, password });
    csrf = r.csrf_token;
    return r;
  },
  async logout(): Promise<void> {
    try {
      await json<void>('POST', '/api/auth/logout');
    } finally {
      csrf = '';
    }
  },
  forget(): void {
    csrf = '';
  },
  me: () => json<Me>('GET', '/api/auth/me'),

  platforms: (q?: Query) => list<Platform>('/api/platforms/', q),
  platform: (id: number) => json<Platform>('GET', `/api/platforms/${id}`),
  platformCreate: (p: PlatformRequest) => json<Platform>('POST', '/api/platforms/', p),
  platformUpdate: (id: number, p: PlatformRequest) => json<Platform>('PUT', `/api/platforms/${id}`, p),
  platformDelete: (id: number) => json<void>('DELETE', `/api/platforms/${id}`),
  platformTest: (id: number) => json<TestResult>('POST', `/api/platforms/${id}/test`, {}),
  hostKey: (id: number) => json<HostKeyInfo>('GET', `/api/platforms/${id}/host_key`),
  hostKeyAccept: (id: number, fingerprint: string) => json<HostKeyInfo>('POST', `/api/platforms/${id}/host_key/accept`, { fingerprint }),
  deployKeys: (id: number, keyIDs: number[], identity: boolean) =>
    json<RunCreated>('POST', `/api/platforms/${id}/deploy_keys`, { key_ids: keyIDs, identity }),
  revokeKeys: (id: number, keyIDs: number[], identity: boolean) =>
    json<RunCreated>('POST', `/api/platforms/${id}/revoke_keys`, { key_ids: keyIDs, identity }),
  platformImport: (r: ImportRequest) => json<{ created: number; items: ImportItem[] }>('POST', '/api/platforms/import', r),

  credentials: (q?: Query) => list<Credential>('/api/credentials', q),
  credentialCreate: (c: { name: string; kind: string; password?: string; private_key?: string; passphrase?: string }) =>
    json<Credential>('POST', '/api/credentials', c),
  credentialDelete: (id: number) => json<void>('DELETE', `/api/credentials/${id}`),

  keys: (q?: Query) => list<SSHKey>('/api/keys/', q),
  keyCreate: (name: string, publicKey: string) => json<SSHKey>('POST', '/api/keys/', { name, public_key: publicKey }),
  keyDelete: (id: number) => json<void>('DELETE', `/api/keys/${id}`),
  identity: () => json<{ credential_id: number; public_key: string; fingerprint: string }>('GET', '/api/keys/identity'),

  runs: (q?: Query) => list<Run>('/api/runs', q),
  run: (id: string) => json<Run>('GET', `/api/runs/${enc(id)}`),
  runCreate: (r: RunRequest) => json<RunCreated>('POST', '/api/runs', r),
  runPreview: (t: Targets) => json<Preview>('POST', '/api/runs/preview', t),
  runCancel: (id: string) => json<{ id: string; state: string }>('POST', `/api/runs/${enc(id)}/cancel`, {}),
  runRerun: (id: string, only: 'failed' | 'all') => json<RunCreated>('POST', `/api/runs/${enc(id)}/rerun`, { only }),
  runSummary: (id: string) => json<{ run_id: string; groups: SummaryGroup[] | null }>('GET', `/api/runs/${enc(id)}/summary`),
  runLogsURL: (id: string) => `/api/runs/${enc(id)}/logs`,
  hostLogURL: (id: string, idx: number) => `/api/runs/${enc(id)}/hosts/${idx}/log?format=text`,

  executors: () => list<Executor>('/api/executors'),

  users: (q?: Query) => list<User>('/api/users', q),
  userCreate: (username: string, role: Role) => json<{ user: User; master_key: string }>('POST', '/api/users', { username, role }),
  userUpdate: (id: number, role: Role) => json<User>('PUT', `/api/users/${id}`, { role }),
  userDelete: (id: number) => json<void>('DELETE', `/api/users/${id}`),
  userResetKey: (id: number) => json<{ master_key: string }>('POST', `/api/users/${id}/reset_key`, {}),
  sessions: (q?: Query) => list<Session>('/api/sessions', q),
  sessionDelete: (id: string) => json<void>('DELETE', `/api/sessions/${enc(id)}`),

  audit: (q?: Query) => list<AuditEntry>('/api/audit', q),

  // wsURL is the run's live transcript, resumed after the seq last seen.
  wsURL(runID: string, since: number): string {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws/tasks/${enc(runID)}${since > 0 ? '?since=' + since : ''}`;
  },
};
