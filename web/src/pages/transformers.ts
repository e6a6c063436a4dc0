// Transformers: panels with a kVA rating, loading % and temperature against limits, 24 h profile.
import { api } from "../api";
import { sparkline } from "../charts";
import { clear, h, setText } from "../dom";
import { num, t } from "../i18n";
import { apparentKva, loadingPercent, temperature } from "../metrics";
import { store } from "../state";

// Oil temperature limit of a typical ONAN distribution transformer (IEC 60076-7 top-oil).
const TEMP_LIMIT_C = 95;

export function renderTransformers(root: HTMLElement): () => void {
  const list = h("div", { class: "cards wide", "data-testid": "transformers" });
  root.append(h("h1", {}, t("transformers")), list);
  const rows = new Map<string, HTMLElement>();

  function update(): void {
    const trafos = [...store.panels.values()].filter((p) => p.kva_rating).sort((a, b) => a.id.localeCompare(b.id));
    if (!trafos.length) {
      clear(list);
      rows.clear();
      list.append(h("p", { class: "empty" }, t("noTransformers")));
      return;
    }
    list.querySelector(".empty")?.remove();
    for (const p of trafos) {
      let row = rows.get(p.id);
      if (!row) {
        row = h(
          "div",
          { class: "card trafo", "data-panel": p.id },
          h("a", { href: `#/panel/${encodeURIComponent(p.id)}` }, h("strong", { class: "name" })),
          h("div", { class: "gauges" },
            h("div", { class: "gauge" }, h("span", { class: "label" }, t("loading")), h("div", { class: "bar" }, h("i", { "data-bar": "load" })), h("span", { class: "value", "data-field": "load" })),
            h("div", { class: "gauge" }, h("span", { class: "label" }, t("temperature")), h("div", { class: "bar" }, h("i", { "data-bar": "temp" })), h("span", { class: "value", "data-field": "temp" }))),
          h("div", { class: "label" }, t("loadProfile")),
          h("div", { class: "spark" }),
        );
        rows.set(p.id, row);
        list.append(row);
        void loadProfile(p.id, p.kva_rating as number, row.querySelector(".spark") as HTMLElement);
      }
      const values = store.live.get(p.id)?.values ?? {};
      const load = loadingPercent(p, values);
      const temp = temperature(values);
      setText(row.querySelector(".name"), `${p.name} · ${num(p.kva_rating, 0)} kVA`);
      setText(row.querySelector('[data-field="load"]'), load === null ? "–" : `${num(load, 0)} % (${num(apparentKva(values), 1)} kVA)`);
      setText(row.querySelector('[data-field="temp"]'), temp === null ? "–" : `${num(temp, 1)} °C / ${t("limit")} ${TEMP_LIMIT_C} °C`);
      bar(row, "load", load ?? 0, 100);
      bar(row, "temp", temp ?? 0, TEMP_LIMIT_C);
    }
  }

  update();
  return store.onChange(update);
}

function bar(row: HTMLElement, key: string, value: number, limit: number): void {
  const el = row.querySelector<HTMLElement>(`[data-bar="${key}"]`);
  if (!el) return;
  const pct = Math.max(0, Math.min(100, (100 * value) / limit));
  el.style.width = `${pct}%`;
  el.className = value >= limit ? "alarm" : value >= 0.8 * limit ? "warn" : "";
}

async function loadProfile(panelId: string, kva: number, el: HTMLElement): Promise<void> {
  const end = Date.now();
  const page = await api.readings(panelId, ["apparent_power", "power"], end - 86400e3, end, 96).catch(() => null);
  const series = page?.series.find((s) => s.metric === "apparent_power" && s.points.length) ?? page?.series.find((s) => s.points.length);
  if (!series) {
    el.append(h("p", { class: "muted" }, t("noData")));
    return;
  }
  const ts = series.points.map((p) => Date.parse(p.ts));
  const pct = series.points.map((p) => (100 * (p.max ?? p.value)) / 1000 / kva);
  sparkline(el, ts, pct, 100, [end - 86400e3, end]);
}
