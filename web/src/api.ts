// REST calls. Every call goes through `request`, so errors have one shape.
export interface PanelInfo {
  id: string;
  name: string;
  region: string | null;
  location: string | null;
  phases: number;
  nominal_voltage: number | null;
  rated_current: number | null;
  kva_rating: number | null;
  notes: string | null;
  last_seen: string | null;
  metrics?: Array<{ metric: string; known: boolean; unit: string | null }> | null;
}

export interface Point {
  ts: string;
  value: number;
  min?: number | null;
  max?: number | null;
  count?: number | null;
}

export interface Series {
  metric: string;
  unit: string | null;
  points: Point[];
}

export interface ReadingsPage {
  series: Series[];
  downsampled: boolean;
  next_after: number | null;
}

export interface Rejected {
  reason: string;
  reason_text: string;
  detail: string;
  topic: string;
  payload: string;
  at: string;
}

export interface Site {
  timezone: string;
  version: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function csrfToken(): string {
  const match = document.cookie.match(/(?:^|;\s*)pelbiot_csrf=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

let onLoggedOut: () => void = () => undefined;

/** Called when the session cannot be renewed: the app shows the login page. */
export function setLoggedOutHandler(fn: () => void): void {
  onLoggedOut = fn;
}

let refreshing: Promise<boolean> | null = null;

async function refreshSession(): Promise<boolean> {
  refreshing ??= fetch("/api/v1/auth/refresh", { method: "POST", credentials: "same-origin" })
    .then((r) => r.ok)
    .catch(() => false)
    .finally(() => setTimeout(() => (refreshing = null), 0));
  return refreshing;
}

async function send(path: string, init: RequestInit): Promise<Response> {
  const method = (init.method ?? "GET").toUpperCase();
  return fetch(path, {
    credentials: "same-origin",
    ...init,
    headers: {
      Accept: "application/json",
      ...(init.body ? { "Content-Type": "application/json" } : {}),
      ...(method !== "GET" ? { "X-CSRF-Token": csrfToken() } : {}),
    },
  });
}

async function request<T>(path: string, init: RequestInit = {}, retry = true): Promise<T> {
  let response = await send(path, init);
  if (response.status === 401 && retry && !path.startsWith("/api/v1/auth/")) {
    // Retried even when this refresh failed: another tab may have renewed the shared cookies
    // in the same instant (the server refuses the loser of that race without ending the session).
    await refreshSession();
    response = await send(path, init);
    if (response.status === 401) onLoggedOut();
  }
  if (response.status === 204) return undefined as T;
  if (!response.ok) {
    let message = response.statusText;
    try {
      const body = await response.json();
      message = body?.error?.message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, message);
  }
  return (await response.json()) as T;
}

export interface Me {
  kind: string;
  username: string;
  role: string | null;
  regions: string[] | null;
  permissions: string[];
  password_expired: boolean;
}

export interface UserRow {
  id: number;
  username: string;
  role: string;
  regions: string[] | null;
  disabled: boolean;
  locked: boolean;
  failed_logins: number;
}

export interface KeyRow {
  id: number;
  name: string;
  prefix: string;
  scopes: string[];
  panel_id: string | null;
  region: string | null;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  created_at: string;
  created_by: string;
  active: boolean;
  key?: string;
}

export interface AuditRow {
  id: number;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  address: string | null;
  success: boolean;
  details: Record<string, unknown> | null;
}

const json = (body: unknown): RequestInit => ({ method: "POST", body: JSON.stringify(body) });

export const auth = {
  me: () => request<Me>("/api/v1/auth/me", {}, false),
  login: (username: string, password: string) => request<unknown>("/api/v1/auth/login", json({ username, password }), false),
  logout: () => request<void>("/api/v1/auth/logout", { method: "POST" }, false),
  changePassword: (current_password: string, new_password: string) =>
    request<void>("/api/v1/auth/password", json({ current_password, new_password })),
};

export const admin = {
  users: () => request<UserRow[]>("/api/v1/users"),
  createUser: (body: { username: string; password: string; role: string; regions: string[] | null }) =>
    request<UserRow>("/api/v1/users", json(body)),
  updateUser: (id: number, body: Partial<{ role: string; regions: string[] | null; disabled: boolean }>) =>
    request<UserRow>(`/api/v1/users/${id}`, { method: "PATCH", body: JSON.stringify(body) }),
  unlockUser: (id: number) => request<void>(`/api/v1/users/${id}/unlock`, { method: "POST" }),
  keys: () => request<KeyRow[]>("/api/v1/api-keys"),
  createKey: (body: { name: string; scopes: string[]; panel_id: string | null; region: string | null }) =>
    request<KeyRow>("/api/v1/api-keys", json(body)),
  revokeKey: (id: number) => request<void>(`/api/v1/api-keys/${id}`, { method: "DELETE" }),
  audit: (params: URLSearchParams) => request<AuditRow[]>(`/api/v1/audit?${params}`),
};

export const api = {
  site: () => request<Site>("/api/v1/site"),
  panels: () => request<{ items: PanelInfo[]; total: number }>("/api/v1/panels?limit=1000"),
  panel: (id: string) => request<PanelInfo>(`/api/v1/panels/${encodeURIComponent(id)}`),
  updatePanel: (id: string, changes: Partial<PanelInfo>) =>
    request<PanelInfo>(`/api/v1/panels/${encodeURIComponent(id)}`, {
      method: "PATCH",
      body: JSON.stringify(changes),
    }),
  readings: (id: string, metrics: string[], startMs: number, endMs: number, maxPoints?: number) => {
    const params = new URLSearchParams();
    for (const m of metrics) params.append("metric", m);
    params.set("start", String(startMs));
    params.set("end", String(endMs));
    if (maxPoints) params.set("max_points", String(maxPoints));
    else params.set("limit", "100000");
    return request<ReadingsPage>(`/api/v1/panels/${encodeURIComponent(id)}/readings?${params}`);
  },
  energyToday: () => request<Array<{ panel_id: string; kwh: number }>>("/api/v1/energy/today"),
  ingestStatus: () => request<Record<string, unknown>>("/api/v1/ingest/status"),
  rejected: () => request<Rejected[]>("/api/v1/ingest/rejected?limit=50"),
};
