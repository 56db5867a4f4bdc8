// The typed client of testum's REST API and WebSocket: the only module that
// speaks HTTP. The session is the HttpOnly cookie; the CSRF token of the
// login is kept in memory (and read back from the testum_csrf cookie after
// a reload) and sent as X-CSRF-Token on every state-changing request.

import type { components } from './api-types';

// The wire types are generated from libs/api/openapi.yaml into api-types.ts
// (npm run gen:api); these are their names in the console.
type Schemas = components['schemas'];

export type User = Schemas['User'];
export type Role = Schemas['Role'];
export const roles: Role[] = ['admin', 'extended_admin', 'super_admin'];

export type ErrorBody = Schemas['Error'];
export type ErrorCode = Schemas['ErrorCode'];
export type LoginResponse = Schemas['LoginResponse'];
export type Me = Schemas['Me'];
export type Platform = Schemas['Platform'];
export type PlatformRequest = Schemas['PlatformRequest'];
export type TestResult = Schemas['TestResult'];
export type HostKeyInfo = Schemas['HostKeyInfo'];
// The import dialog and the run view hold these fields as the strings their
// select and the stream give them; the document names the values.
export type ImportRequest = Omit<Schemas['ImportRequest'], 'format'> & { format?: string };
export type ImportItem = Schemas['ImportItem'];
export type ImportResult = Schemas['ImportResult'];
export type Credential = Schemas['Credential'];
export type CredentialRequest = Schemas['CredentialRequest'];
export type SSHKey = Schemas['SSHKey'];
export type Identity = Schemas['Identity'];
export type KeysRun = Schemas['KeysRun'];
export type Targets = Schemas['Targets'];
export type Script = Schemas['Script'];
export type RunRequest = Schemas['RunRequest'];
export type RunCreated = Schemas['RunCreated'];
export type RunState = Schemas['RunState'];
export type HostState = Schemas['HostState'];
export type Preview = Schemas['Preview'];
export type RunHost = Schemas['RunHost'];
export type Run = Schemas['Run'];
export type CancelResponse = Schemas['CancelResponse'];
export type SummaryGroup = Schemas['SummaryGroup'];
export type RunSummary = Schemas['RunSummary'];
export type Executor = Schemas['Executor'];
export type Session = Schemas['Session'];
export type AuditEntry = Schemas['AuditEntry'];
export type UserCreated = Schemas['UserCreated'];
export type MasterKey = Schemas['MasterKey'];

// WSMessage is one message of /ws/tasks/{run}.
export type WSMessage = Schemas['WSMessage'];

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
    json<KeysRun>('POST', `/api/platforms/${id}/deploy_keys`, { key_ids: keyIDs, identity }),
  revokeKeys: (id: number, keyIDs: number[], identity: boolean) =>
    json<KeysRun>('POST', `/api/platforms/${id}/revoke_keys`, { key_ids: keyIDs, identity }),
  platformImport: (r: ImportRequest) => json<ImportResult>('POST', '/api/platforms/import', r),

  credentials: (q?: Query) => list<Credential>('/api/credentials', q),
  credentialCreate: (c: CredentialRequest) =>
    json<Credential>('POST', '/api/credentials', c),
  credentialDelete: (id: number) => json<void>('DELETE', `/api/credentials/${id}`),

  keys: (q?: Query) => list<SSHKey>('/api/keys/', q),
  keyCreate: (name: string, publicKey: string) => json<SSHKey>('POST', '/api/keys/', { name, public_key: publicKey }),
  keyDelete: (id: number) => json<void>('DELETE', `/api/keys/${id}`),
  identity: () => json<Identity>('GET', '/api/keys/identity'),

  runs: (q?: Query) => list<Run>('/api/runs', q),
  run: (id: string) => json<Run>('GET', `/api/runs/${enc(id)}`),
  runCreate: (r: RunRequest) => json<RunCreated>('POST', '/api/runs', r),
  runPreview: (t: Targets) => json<Preview>('POST', '/api/runs/preview', t),
  runCancel: (id: string) => json<CancelResponse>('POST', `/api/runs/${enc(id)}/cancel`, {}),
  runRerun: (id: string, only: 'failed' | 'all') => json<RunCreated>('POST', `/api/runs/${enc(id)}/rerun`, { only }),
  runSummary: (id: string) => json<RunSummary>('GET', `/api/runs/${enc(id)}/summary`),
  runLogsURL: (id: string) => `/api/runs/${enc(id)}/logs`,
  hostLogURL: (id: string, idx: number) => `/api/runs/${enc(id)}/hosts/${idx}/log?format=text`,

  executors: () => list<Executor>('/api/executors'),

  users: (q?: Query) => list<User>('/api/users', q),
  userCreate: (username: string, role: Role) => json<UserCreated>('POST', '/api/users', { username, role }),
  userUpdate: (id: number, role: Role) => json<User>('PUT', `/api/users/${id}`, { role }),
  userDelete: (id: number) => json<void>('DELETE', `/api/users/${id}`),
  userResetKey: (id: number) => json<MasterKey>('POST', `/api/users/${id}/reset_key`, {}),
  sessions: (q?: Query) => list<Session>('/api/sessions', q),
  sessionDelete: (id: string) => json<void>('DELETE', `/api/sessions/${enc(id)}`),

  audit: (q?: Query) => list<AuditEntry>('/api/audit', q),

  // wsURL is the run's live transcript, resumed after the seq last seen.
  wsURL(runID: string, since: number): string {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws/tasks/${enc(runID)}${since > 0 ? '?since=' + since : ''}`;
  },
};
