// The dashboard's state: panels from REST, live values and status from the WebSocket feed.
import { api, type PanelInfo } from "./api";

export type Status = "online" | "stale" | "offline";
export type Connection = "connecting" | "connected" | "disconnected";

export interface LivePanel {
  values: Record<string, number>;
  ts: number | null;
  status: Status;
  lastSeen: number | null;
}

export interface IngestFrame {
  connected: boolean;
  broker: string | null;
  messages_received: number;
  readings_received: number;
  readings_written: number;
  duplicates: number;
  rejected: number;
  queue_depth: number;
  lag_s: number;
  db_ok: boolean;
  server_time: number;
}

export interface ReadingFrame {
  panel: string;
  ts: number;
  values: Record<string, number>;
}

type Listener = () => void;
type ReadingListener = (frame: ReadingFrame) => void;

class Store {
  panels = new Map<string, PanelInfo>();
  live = new Map<string, LivePanel>();
  energyToday = new Map<string, number>();
  connection: Connection = "connecting";
  lastUpdate: number | null = null;
  ingest: IngestFrame | null = null;
  previousIngest: IngestFrame | null = null;
  private listeners = new Set<Listener>();
  private readingListeners = new Set<ReadingListener>();
  private scheduled = false;

  onChange(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onReading(fn: ReadingListener): () => void {
    this.readingListeners.add(fn);
    return () => this.readingListeners.delete(fn);
  }

  /** Coalesce re-renders to one per animation frame. */
  changed(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      for (const fn of this.listeners) fn();
    });
  }

  /** Reload panels and today's energy; never rejects (a failed fetch keeps what we have). */
  async refreshPanels(): Promise<void> {
    try {
      const [list, energy] = await Promise.all([api.panels(), api.energyToday().catch(() => [])]);
      this.panels = new Map(list.items.map((p) => [p.id, p]));
      this.energyToday = new Map(energy.map((e) => [e.panel_id, e.kwh]));
      this.changed();
    } catch {
      // offline or logged out: the connection indicator and the login page say so
    }
  }

  applySnapshot(panels: Record<string, { values: Record<string, number>; ts: number | null; status: Status; last_seen: number | null }>): void {
    this.live = new Map(
      Object.entries(panels).map(([id, p]) => [id, { values: { ...p.values }, ts: p.ts, status: p.status, lastSeen: p.last_seen }]),
    );
    for (const id of this.live.keys()) {
      if (!this.panels.has(id)) void this.refreshPanels();
    }
    this.changed();
  }

  applyReading(frame: ReadingFrame): void {
    let panel = this.live.get(frame.panel);
    if (!panel) {
      panel = { values: {}, ts: null, status: "online", lastSeen: null };
      this.live.set(frame.panel, panel);
      if (!this.panels.has(frame.panel)) void this.refreshPanels();
    }
    Object.assign(panel.values, frame.values);
    panel.ts = frame.ts;
    panel.lastSeen = Date.now();
    this.lastUpdate = Date.now();
    for (const fn of this.readingListeners) fn(frame);
    this.changed();
  }

  applyStatus(panelId: string, status: Status, lastSeen: number | null): void {
    const panel = this.live.get(panelId) ?? { values: {}, ts: null, status, lastSeen };
    panel.status = status;
    panel.lastSeen = lastSeen;
    this.live.set(panelId, panel);
    this.changed();
  }

  applyIngest(frame: IngestFrame): void {
    this.previousIngest = this.ingest;
    this.ingest = frame;
    this.changed();
  }

  remove(panelId: string): void {
    this.live.delete(panelId);
    this.panels.delete(panelId);
    this.changed();
  }

  setConnection(connection: Connection): void {
    this.connection = connection;
    this.changed();
  }
}

export const store = new Store();
