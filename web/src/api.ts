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

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(path, {
    credentials: "same-origin",
    ...init,
    headers: { Accept: "application/json", ...(init.body ? { "Content-Type": "application/json" } : {}) },
  });
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
