// Panel detail: live values per phase, a live 15-minute chart, history, editable metadata.
import { api, ApiError, type PanelInfo } from "../api";
import { historyChart, LiveChart, type HistorySeries } from "../charts";
import { clear, h, setText } from "../dom";
import { dateTime, num, t, type Key } from "../i18n";
import { unitOf } from "../metrics";
import { can } from "../session";
import { store } from "../state";

const GROUPS: Array<{ key: Key; base: string[]; digits: number }> = [
  { key: "voltage", base: ["voltage", "voltage_l1", "voltage_l2", "voltage_l3"], digits: 1 },
  { key: "current", base: ["current", "current_l1", "current_l2", "current_l3", "current_n"], digits: 1 },
  { key: "power", base: ["power", "power_l1", "power_l2", "power_l3"], digits: 0 },
  { key: "powerFactor", base: ["power_factor", "power_factor_l1", "power_factor_l2", "power_factor_l3"], digits: 2 },
  { key: "frequency", base: ["frequency"], digits: 2 },
  { key: "temperature", base: ["temperature", "oil_temperature", "winding_temperature"], digits: 1 },
];

const RANGES: Array<[string, number]> = [
  ["1h", 3600e3],
  ["24h", 86400e3],
  ["7d", 7 * 86400e3],
  ["30d", 30 * 86400e3],
  ["1y", 365 * 86400e3],
];

export function renderPanel(root: HTMLElement, panelId: string): () => void {
  const cleanups: Array<() => void> = [];
  let info: PanelInfo | undefined = store.panels.get(panelId);
  let group = GROUPS[0];
  let range: [number, number] = [Date.now() - 86400e3, Date.now()];
  let liveChart: LiveChart | null = null;

  const title = h("h1", { "data-testid": "panel-title" }, info?.name ?? panelId);
  const statusLine = h("p", { class: "muted", "data-testid": "panel-status" });
  const valuesBox = h("div", { class: "values", "data-testid": "live-values" });
  const picker = h("select", { "aria-label": t("metric"), "data-testid": "metric-picker" });
  const liveBox = h("div", { class: "chart", "data-testid": "live-chart" });
  const historyBox = h("div", { class: "chart", "data-testid": "history-chart" });
  const historyNote = h("p", { class: "muted", "data-testid": "history-note" });
  const rangeBar = h("div", { class: "ranges" });
  const from = h("input", { type: "datetime-local", "aria-label": t("from") });
  const to = h("input", { type: "datetime-local", "aria-label": t("to") });
  const form = h("form", { class: "meta", "data-testid": "panel-form" });
  const formTitle = h("h2", {}, t("details"));

  root.append(
    h("a", { href: "#/", class: "back" }, `← ${t("back")}`),
    title,
    statusLine,
    valuesBox,
    h("div", { class: "section-head" }, h("h2", {}, t("liveChart")), picker),
    liveBox,
    h("div", { class: "section-head" }, h("h2", {}, t("history")), rangeBar),
    historyBox,
    historyNote,
    formTitle,
    form,
  );

  for (const [label, span] of RANGES) {
    rangeBar.append(
      h("button", {
        type: "button",
        "data-range": label,
        onclick: () => {
          range = [Date.now() - span, Date.now()];
          markRange(label);
          void loadHistory();
        },
      }, label),
    );
  }
  rangeBar.append(
    h("span", { class: "custom" }, `${t("custom")}: `, from, to,
      h("button", {
        type: "button",
        onclick: () => {
          const start = Date.parse(from.value);
          const end = Date.parse(to.value);
          if (Number.isFinite(start) && Number.isFinite(end) && start < end) {
            range = [start, end];
            markRange("");
            void loadHistory();
          }
        },
      }, t("apply"))),
  );
  markRange("24h");

  function markRange(label: string): void {
    for (const b of rangeBar.querySelectorAll<HTMLButtonElement>("button[data-range]")) {
      b.classList.toggle("active", b.dataset.range === label);
    }
  }

  function metricsOfGroup(): string[] {
    const present = new Set([...(info?.metrics?.map((m) => m.metric) ?? []), ...Object.keys(store.live.get(panelId)?.values ?? {})]);
    const chosen = group.base.filter((m) => present.has(m));
    return chosen.length ? chosen : [group.base[0]];
  }

  function fillPicker(): void {
    const current = picker.value || group.key;
    clear(picker);
    for (const g of GROUPS) picker.append(h("option", { value: g.key }, t(g.key)));
    picker.value = current;
  }
  picker.addEventListener("change", () => {
    group = GROUPS.find((g) => g.key === picker.value) ?? GROUPS[0];
    void setupLiveChart();
    void loadHistory();
  });

  async function setupLiveChart(): Promise<void> {
    liveChart?.destroy();
    clear(liveBox);
    const metrics = metricsOfGroup();
    const chart = new LiveChart(liveBox, metrics, metrics.map((m) => `${m} (${unitOf(m)})`));
    liveChart = chart;
    const end = Date.now() + 1000;
    try {
      const page = await api.readings(panelId, metrics, end - 15 * 60e3, end);
      const points = new Map<number, Record<string, number>>();
      for (const s of page.series) {
        for (const p of s.points) {
          const ms = Date.parse(p.ts);
          points.set(ms, { ...(points.get(ms) ?? {}), [s.metric]: p.value });
        }
      }
      if (liveChart === chart) chart.seed(points);
    } catch {
      // the live feed still fills the chart
    }
  }

  async function loadHistory(): Promise<void> {
    const metrics = metricsOfGroup();
    setText(historyNote, "…");
    try {
      const page = await api.readings(panelId, metrics, range[0], range[1], 600);
      const series: HistorySeries[] = page.series.map((s) => ({
        label: `${s.metric} (${s.unit ?? ""})`,
        ts: s.points.map((p) => Date.parse(p.ts)),
        mean: s.points.map((p) => p.value),
        min: s.points.map((p) => p.min ?? p.value),
        max: s.points.map((p) => p.max ?? p.value),
      }));
      clear(historyBox);
      const total = page.series.reduce((n, s) => n + s.points.reduce((c, p) => c + (p.count ?? 1), 0), 0);
      if (!total) {
        historyBox.append(h("p", { class: "empty" }, t("noData")));
        setText(historyNote, "");
        return;
      }
      historyChart(historyBox, series, range);
      historyBox.dataset.points = String(total);
      setText(historyNote, `${num(total, 0)} ${t("readings")} · ${t("minMax")} / ${t("mean")} · ${t("zoomHint")}`);
    } catch (err) {
      setText(historyNote, err instanceof Error ? err.message : String(err));
    }
  }

  function renderValues(): void {
    const values = store.live.get(panelId)?.values ?? {};
    const live = store.live.get(panelId);
    setText(title, info?.name ?? panelId);
    setText(statusLine, `${t(live?.status ?? "offline")} · ${t("lastSeen")}: ${dateTime(live?.lastSeen ?? null)}`);
    statusLine.dataset.status = live?.status ?? "offline";
    clear(valuesBox);
    const table = h("table", { class: "phase-table" });
    table.append(h("thead", {}, h("tr", {}, h("th", {}), h("th", {}, "L1"), h("th", {}, "L2"), h("th", {}, "L3"), h("th", {}, t("total")))));
    const body = h("tbody");
    const row = (key: Key, base: string, digits: number, scale = 1, unit = unitOf(base)) => {
      const cell = (metric: string) => {
        const v = values[metric];
        return h("td", { "data-metric": metric }, v === undefined ? "–" : `${num(v / scale, digits)} ${unit}`);
      };
      body.append(h("tr", {}, h("th", {}, t(key)), cell(`${base}_l1`), cell(`${base}_l2`), cell(`${base}_l3`), cell(base)));
    };
    row("voltage", "voltage", 1);
    row("current", "current", 1);
    row("power", "power", 2, 1000, "kW");
    row("powerFactor", "power_factor", 2);
    table.append(body);
    const extras = h("div", { class: "extras" });
    const extra = (key: Key, metric: string, digits: number) =>
      extras.append(h("div", { class: "field" }, h("span", { class: "label" }, t(key)), h("span", { class: "value", "data-metric": metric }, values[metric] === undefined ? "–" : `${num(values[metric], digits)} ${unitOf(metric)}`)));
    extra("frequency", "frequency", 2);
    extra("temperature", "temperature", 1);
    valuesBox.append(table, extras);
  }

  function renderForm(): void {
    clear(form);
    if (!info || !can("panel_edit")) {
      form.hidden = true;
      formTitle.hidden = true;
      return;
    }
    const fields: Array<[keyof PanelInfo, Key, string]> = [
      ["name", "name", "text"],
      ["region", "region", "text"],
      ["location", "location", "text"],
      ["phases", "phases", "number"],
      ["nominal_voltage", "nominalVoltage", "number"],
      ["rated_current", "ratedCurrent", "number"],
      ["kva_rating", "kvaRating", "number"],
      ["notes", "notes", "text"],
    ];
    const inputs = new Map<string, HTMLInputElement>();
    for (const [name, label, type] of fields) {
      const input = h("input", { name, type, value: info[name] === null ? "" : String(info[name] ?? ""), step: "any" });
      inputs.set(name, input);
      form.append(h("label", {}, h("span", {}, t(label)), input));
    }
    const message = h("span", { class: "muted", "data-testid": "form-message" });
    form.append(h("button", { type: "submit" }, t("save")), message);
    form.onsubmit = async (event) => {
      event.preventDefault();
      const changes: Record<string, string | number | null> = {};
      for (const [name, , type] of fields) {
        const raw = inputs.get(name)?.value.trim() ?? "";
        changes[name] = raw === "" ? (name === "name" ? info?.id ?? "" : null) : type === "number" ? Number(raw) : raw;
      }
      if (changes.phases === null) changes.phases = 3;
      try {
        info = await api.updatePanel(panelId, changes as Partial<PanelInfo>);
        store.panels.set(panelId, info);
        store.changed();
        setText(message, t("saved"));
      } catch (err) {
        setText(message, `${t("saveFailed")}: ${err instanceof ApiError ? err.message : String(err)}`);
      }
    };
  }

  const onResize = () => liveChart?.resize();
  window.addEventListener("resize", onResize);
  cleanups.push(() => window.removeEventListener("resize", onResize));
  cleanups.push(store.onReading((frame) => frame.panel === panelId && liveChart?.push(frame.ts, frame.values)));
  cleanups.push(store.onChange(renderValues));
  cleanups.push(() => liveChart?.destroy());

  fillPicker();
  renderValues();
  api
    .panel(panelId)
    .then((p) => {
      info = p;
      renderForm();
      renderValues();
      void setupLiveChart();
      void loadHistory();
    })
    .catch((err) => {
      if (err instanceof ApiError && err.status === 404) {
        clear(root);
        root.append(h("h1", {}, t("notFound")), h("a", { href: "#/" }, t("back")));
      }
    });
  return () => cleanups.forEach((fn) => fn());
}
