// Overview: every panel as a card, with region filter, search and status counts.
import { clear, h, setText } from "../dom";
import { num, t } from "../i18n";
import { current, loadingPercent, powerKw, voltage } from "../metrics";
import { store, type Status } from "../state";

let search = "";
let region = "";

export function renderOverview(root: HTMLElement): () => void {
  const counts = h("div", { class: "counts", "data-testid": "status-counts" });
  const regionSelect = h("select", { "aria-label": t("region"), "data-testid": "region-filter" });
  const searchInput = h("input", {
    type: "search",
    placeholder: t("search"),
    "aria-label": t("search"),
    value: search,
    "data-testid": "search",
  });
  const grid = h("div", { class: "cards", "data-testid": "panel-cards" });
  root.append(h("div", { class: "toolbar" }, searchInput, regionSelect, counts), grid);
  searchInput.addEventListener("input", () => {
    search = searchInput.value.trim().toLowerCase();
    update();
  });
  regionSelect.addEventListener("change", () => {
    region = regionSelect.value;
    update();
  });

  const cards = new Map<string, HTMLElement>();

  function update(): void {
    const regions = [...new Set([...store.panels.values()].map((p) => p.region).filter((r): r is string => !!r))].sort();
    const options = ["", ...regions];
    if (regionSelect.options.length !== options.length || [...regionSelect.options].some((o, i) => o.value !== options[i])) {
      clear(regionSelect);
      for (const r of options) regionSelect.append(h("option", { value: r }, r || t("allRegions")));
      regionSelect.value = options.includes(region) ? region : "";
    }
    const ids = new Set([...store.panels.keys(), ...store.live.keys()]);
    const tally: Record<Status, number> = { online: 0, stale: 0, offline: 0 };
    const visible: string[] = [];
    for (const id of [...ids].sort()) {
      const info = store.panels.get(id);
      const status = store.live.get(id)?.status ?? "offline";
      tally[status] += 1;
      const haystack = `${id} ${info?.name ?? ""} ${info?.location ?? ""}`.toLowerCase();
      if (region && info?.region !== region) continue;
      if (search && !haystack.includes(search)) continue;
      visible.push(id);
    }
    clear(counts);
    for (const s of ["online", "stale", "offline"] as Status[]) {
      counts.append(h("span", { class: `count ${s}`, "data-testid": `count-${s}` }, h("i", { class: `light ${s}` }), `${t(s)}: ${tally[s]}`));
    }
    for (const [id, card] of cards) {
      if (!visible.includes(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    if (!visible.length && !grid.querySelector(".empty")) {
      grid.append(h("p", { class: "empty" }, t("noPanels")));
    } else if (visible.length) {
      grid.querySelector(".empty")?.remove();
    }
    visible.forEach((id, index) => {
      let card = cards.get(id);
      if (!card) {
        card = buildCard(id);
        cards.set(id, card);
      }
      if (grid.children[index] !== card) grid.insertBefore(card, grid.children[index] ?? null);
      fillCard(card, id);
    });
  }

  update();
  return store.onChange(update);
}

function buildCard(id: string): HTMLElement {
  const field = (key: string, label: string) =>
    h("div", { class: "field" }, h("span", { class: "label", "data-label": key }, label), h("span", { class: "value", "data-field": key }));
  return h(
    "a",
    { class: "card", href: `#/panel/${encodeURIComponent(id)}`, "data-panel": id, "data-testid": "panel-card" },
    h("div", { class: "card-head" }, h("i", { class: "light" }), h("strong", { class: "name" }), h("span", { class: "region" })),
    h("div", { class: "fields" }, field("v", t("voltage")), field("a", t("current")), field("kw", t("power")), field("kwh", t("energyToday")), field("load", t("loading"))),
  );
}

function fillCard(card: HTMLElement, id: string): void {
  const info = store.panels.get(id);
  const live = store.live.get(id);
  const values = live?.values ?? {};
  const status = live?.status ?? "offline";
  const light = card.querySelector(".light");
  if (light) light.className = `light ${status}`;
  card.dataset.status = status;
  setText(card.querySelector(".name"), info?.name ?? id);
  setText(card.querySelector(".region"), info?.region ?? "");
  const set = (key: string, text: string) => setText(card.querySelector(`[data-field="${key}"]`), text);
  set("v", `${num(voltage(values), 1)} V`);
  set("a", `${num(current(values), 1)} A`);
  set("kw", `${num(powerKw(values), 2)} kW`);
  set("kwh", `${num(store.energyToday.get(id) ?? null, 1)} kWh`);
  const load = loadingPercent(info, values);
  set("load", load === null ? "–" : `${num(load, 0)} %`);
  card.querySelector('[data-field="load"]')?.classList.toggle("alarm", load !== null && load >= 100);
  for (const label of card.querySelectorAll<HTMLElement>("[data-label]")) {
    const key = { v: "voltage", a: "current", kw: "power", kwh: "energyToday", load: "loading" }[label.dataset.label as string];
    if (key) setText(label, t(key as Parameters<typeof t>[0]));
  }
}
