// Ingest status: broker connection, message and reading rates, rejected messages with reasons.
import { api } from "../api";
import { clear, h } from "../dom";
import { dateTime, num, t } from "../i18n";
import { store } from "../state";

export function renderIngest(root: HTMLElement): () => void {
  const stats = h("div", { class: "stats", "data-testid": "ingest-stats" });
  const table = h("table", { class: "rejected", "data-testid": "rejected-table" });
  root.append(h("h1", {}, t("ingest")), stats, h("h2", {}, t("rejectedMessages")), table);

  function stat(key: string, label: string, value: string, bad = false): HTMLElement {
    return h("div", { class: `stat${bad ? " bad" : ""}`, "data-stat": key }, h("span", { class: "label" }, label), h("strong", {}, value));
  }

  function update(): void {
    const now = store.ingest;
    const before = store.previousIngest;
    const dt = now && before ? (now.server_time - before.server_time) / 1000 : 0;
    const rate = (field: "messages_received" | "readings_written") => (now && before && dt > 0 ? (now[field] - before[field]) / dt : null);
    clear(stats);
    stats.append(
      stat("broker", t("broker"), now ? `${now.connected ? t("connected") : t("disconnected")} ${now.broker ?? ""}` : "…", !!now && !now.connected),
      stat("database", t("database"), now ? (now.db_ok ? t("ok") : t("down")) : "…", !!now && !now.db_ok),
      stat("mps", t("messagesPerSecond"), num(rate("messages_received"), 1)),
      stat("rps", t("readingsPerSecond"), num(rate("readings_written"), 1)),
      stat("written", t("written"), num(now?.readings_written ?? null, 0)),
      stat("rejected", t("rejected"), num(now?.rejected ?? null, 0)),
      stat("queue", t("queue"), num(now?.queue_depth ?? null, 0)),
      stat("lag", t("lag"), now ? `${num(now.lag_s * 1000, 0)} ms` : "–"),
    );
  }

  async function loadRejected(): Promise<void> {
    const rows = await api.rejected().catch(() => []);
    clear(table);
    table.append(h("thead", {}, h("tr", {}, h("th", {}, t("time")), h("th", {}, t("reason")), h("th", {}, t("topic")), h("th", {}, t("payload")))));
    const body = h("tbody");
    if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 4 }, t("none"))));
    for (const r of rows) {
      body.append(h("tr", {}, h("td", {}, dateTime(Date.parse(r.at))), h("td", { title: r.detail }, `${r.reason} — ${r.detail}`), h("td", {}, r.topic), h("td", { class: "mono" }, r.payload)));
    }
    table.append(body);
  }

  update();
  void loadRejected();
  const timer = window.setInterval(() => void loadRejected(), 5000);
  const off = store.onChange(update);
  return () => {
    off();
    clearInterval(timer);
  };
}
