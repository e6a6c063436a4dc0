// The app shell: header with navigation, language and connection state; hash routes.
import "./style.css";
import { api } from "./api";
import { setChartZone } from "./charts";
import { clear, h, setText } from "./dom";
import { currentLang, dateTime, onLangChange, setLang, setZone, t, type Lang } from "./i18n";
import { connectLive } from "./live";
import { renderIngest } from "./pages/ingest";
import { renderOverview } from "./pages/overview";
import { renderPanel } from "./pages/panel";
import { renderTransformers } from "./pages/transformers";
import { store } from "./state";

const main = h("main", { id: "main" });
const nav = h("nav", { "aria-label": "main" });
const connection = h("span", { class: "connection", "data-testid": "connection" });
const lastUpdate = h("span", { class: "last-update muted", "data-testid": "last-update" });
const langSelect = h("select", { "aria-label": "Language / Bahasa", "data-testid": "language" },
  h("option", { value: "id" }, "Bahasa Indonesia"),
  h("option", { value: "en" }, "English"));
langSelect.value = currentLang();
langSelect.addEventListener("change", () => setLang(langSelect.value as Lang));

document.body.append(
  h("header", {}, h("a", { class: "brand", href: "#/" }, "PELBIOT"), nav, h("div", { class: "right" }, connection, lastUpdate, langSelect)),
  main,
);

let cleanup: (() => void) | null = null;

function renderNav(): void {
  clear(nav);
  const here = location.hash || "#/";
  for (const [href, key] of [["#/", "overview"], ["#/transformers", "transformers"], ["#/ingest", "ingest"]] as const) {
    nav.append(h("a", { href, class: here === href ? "active" : "" }, t(key)));
  }
}

function route(): void {
  cleanup?.();
  clear(main);
  renderNav();
  const hash = location.hash.replace(/^#/, "") || "/";
  const panel = hash.match(/^\/panel\/(.+)$/);
  if (panel) cleanup = renderPanel(main, decodeURIComponent(panel[1]));
  else if (hash === "/transformers") cleanup = renderTransformers(main);
  else if (hash === "/ingest") cleanup = renderIngest(main);
  else cleanup = renderOverview(main);
}

function renderHeader(): void {
  const state = store.connection;
  connection.className = `connection ${state}`;
  connection.dataset.state = state;
  setText(connection, t(state));
  setText(lastUpdate, `${t("lastUpdate")}: ${dateTime(store.lastUpdate, false)}`);
}

store.onChange(renderHeader);
onLangChange(() => {
  document.title = `PELBIOT — ${t("overview")}`;
  route();
  renderHeader();
});
window.addEventListener("hashchange", route);

async function start(): Promise<void> {
  document.documentElement.lang = currentLang();
  try {
    const site = await api.site();
    setZone(site.timezone);
    setChartZone(site.timezone);
  } catch {
    // keep the default zone
  }
  route();
  renderHeader();
  void store.refreshPanels().catch(() => undefined);
  connectLive();
  window.setInterval(() => void store.refreshPanels().catch(() => undefined), 60_000);
  if ("serviceWorker" in navigator && location.protocol === "https:") {
    void navigator.serviceWorker.register("/sw.js").catch(() => undefined);
  }
}

void start();
