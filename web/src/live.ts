// The WebSocket client: reconnects with capped, jittered backoff and resyncs from REST.
import { loadSession } from "./session";
import { store, type IngestFrame, type ReadingFrame, type Status } from "./state";

/** Fired on window after the feed said our rights changed and the session was reloaded. */
export const ACCESS_CHANGED = "pelbiot:access-changed";

let socket: WebSocket | null = null;
let attempt = 0;
let timer: number | undefined;

export function disconnectLive(): void {
  clearTimeout(timer);
  const ws = socket;
  socket = null;
  ws?.close();
}

export function connectLive(): void {
  clearTimeout(timer);
  store.setConnection("connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // Authenticated by the session cookie: no token ever goes into the URL (URLs get logged).
  const ws = new WebSocket(`${scheme}://${location.host}/api/v1/live`, ["pelbiot.v1"]);
  socket = ws;
  ws.onopen = () => {
    attempt = 0;
    store.setConnection("connected");
    ws.send(JSON.stringify({ type: "subscribe", panels: ["*"] }));
    // Whatever changed while we were away (new panels, edits) comes from REST.
    void store.refreshPanels().catch(() => undefined);
  };
  ws.onmessage = (event) => handle(JSON.parse(String(event.data)));
  ws.onclose = (event) => {
    if (socket !== ws) return;
    if (event.code === 1008) {
      // refused by policy: the session ended; the next REST call leads to the login page
      void store.refreshPanels().catch(() => undefined);
    }
    store.setConnection("disconnected");
    const delay = Math.min(10_000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    timer = window.setTimeout(connectLive, delay);
  };
  ws.onerror = () => ws.close();
}

function handle(frame: { type: string } & Record<string, unknown>): void {
  switch (frame.type) {
    case "snapshot":
      store.applySnapshot(frame.panels as Parameters<typeof store.applySnapshot>[0]);
      break;
    case "reading":
      store.applyReading(frame as unknown as ReadingFrame);
      break;
    case "status":
      store.applyStatus(String(frame.panel), frame.status as Status, (frame.last_seen as number) ?? null);
      break;
    case "ingest":
      store.applyIngest(frame as unknown as IngestFrame);
      break;
    case "removed":
      store.remove(String(frame.panel));
      break;
    case "access":
      // our role or regions changed: the server re-scoped the feed; the panel list, our
      // permissions and the menu follow
      void store.refreshPanels().catch(() => undefined);
      void loadSession().then(() => window.dispatchEvent(new Event(ACCESS_CHANGED)));
      break;
    default:
      break; // dropped (a snapshot follows), pong, error
  }
}
