// The app shell: login gate, header with navigation, user menu, language and connection state.
import "./style.css";
import { api, auth, setLoggedOutHandler } from "./api";
import { setChartZone } from "./charts";
import { clear, h, setText } from "./dom";
import { currentLang, dateTime, onLangChange, setLang, setZone, t, type Key, type Lang } from "./i18n";
import { ACCESS_CHANGED, connectLive, disconnectLive } from "./live";
import { renderAccount } from "./pages/account";
import { renderAudit, renderKeys, renderUsers } from "./pages/admin";
import { renderIngest } from "./pages/ingest";
import { renderLogin } from "./pages/login";
import { renderOverview } from "./pages/overview";
import { renderPanel } from "./pages/panel";
import { renderTransformers } from "./pages/transformers";
import { can, clearSession, currentUser, loadSession } from "./session";
import { store } from "./state";

const main = h("main", { id: "main" });
const nav = h("nav", { "aria-label": "main" });
const connection = h("span", { class: "connection", "data-testid": "connection" });
const lastUpdate = h("span", { class: "last-update muted", "data-testid": "last-update" });
const userMenu = h("span", { class: "user-menu", "data-testid": "user-menu" });
const langSelect = h("select", { "aria-label": "Language / Bahasa", "data-testid": "language" },
  h("option", { value: "id" }, "Bahasa Indonesia"),
  h("option", { value: "en" }, "English"));
langSelect.value = currentLang();
langSelect.addEventListener("change", () => setLang(langSelect.value as Lang));
const header = h("header", {}, h("a", { class: "brand", href: "#/" }, "PELBIOT"), nav,
  h("div", { class: "right" }, connection, lastUpdate, userMenu, langSelect));

document.body.append(header, main);

let cleanup: (() => void) | null = null;
let started = false;

const NAV: Array<[string, Key, string | null]> = [
  ["#/", "overview", null],
  ["#/transformers", "transformers", null],
  ["#/ingest", "ingest", null],
  ["#/admin/users", "users", "users"],
  ["#/admin/keys", "apiKeys", "api_keys"],
  ["#/admin/audit", "audit", "audit"],
];

function renderNav(): void {
  clear(nav);
  const here = location.hash || "#/";
  for (const [href, key, permission] of NAV) {
    if (permission && !can(permission)) continue;
    nav.append(h("a", { href, class: here === href ? "active" : "" }, t(key)));
  }
}

// A role change reaches the open page through the live feed: redraw what depends on it.
window.addEventListener(ACCESS_CHANGED, () => {
  if (!currentUser()) return;
  renderNav();
  renderUserMenu();
});

function renderUserMenu(): void {
  clear(userMenu);
  const me = currentUser();
  if (!me) return;
  if (me.kind === "anonymous") {
    userMenu.append(h("span", {}, t("anonymous")), " ", h("a", { href: "#/login", "data-testid": "login-link" }, t("login")));
    return;
  }
  userMenu.append(
    h("a", { href: "#/account", "data-testid": "account-link", title: t("changePassword") }, `${me.username} (${me.role})`),
    " ",
    h("button", { type: "button", class: "link", "data-testid": "logout", onclick: () => void logout() }, t("logOut")),
  );
}

function route(): void {
  cleanup?.();
  cleanup = null;
  clear(main);
  const hash = location.hash.replace(/^#/, "") || "/";
  if (!currentUser() || hash === "/login") {
    showLogin();
    return;
  }
  header.hidden = false;
  renderNav();
  renderUserMenu();
  const panel = hash.match(/^\/panel\/(.+)$/);
  if (panel) cleanup = renderPanel(main, decodeURIComponent(panel[1]));
  else if (hash === "/transformers") cleanup = renderTransformers(main);
  else if (hash === "/ingest") cleanup = renderIngest(main);
  else if (hash === "/account") cleanup = renderAccount(main);
  else if (hash === "/admin/users") cleanup = renderUsers(main);
  else if (hash === "/admin/keys") cleanup = renderKeys(main);
  else if (hash === "/admin/audit") cleanup = renderAudit(main);
  else cleanup = renderOverview(main);
}

function showLogin(): void {
  header.hidden = true;
  clear(main);
  renderLogin(main, () => {
    if (location.hash === "#/login") location.hash = "#/";
    void begin();
  });
}

function renderHeader(): void {
  const state = store.connection;
  connection.className = `connection ${state}`;
  connection.dataset.state = state;
  setText(connection, t(state));
  setText(lastUpdate, `${t("lastUpdate")}: ${dateTime(store.lastUpdate, false)}`);
}

async function logout(): Promise<void> {
  await auth.logout().catch(() => undefined);
  loggedOut();
}

function loggedOut(): void {
  clearSession();
  disconnectLive();
  started = false;
  route();
}

store.onChange(renderHeader);
onLangChange(() => {
  document.title = "PELBIOT";
  route();
  renderHeader();
});
window.addEventListener("hashchange", route);
setLoggedOutHandler(loggedOut);

async function begin(): Promise<void> {
  await loadSession();
  route();
  if (!currentUser() || started) return;
  started = true;
  renderHeader();
  void store.refreshPanels().catch(() => undefined);
  connectLive();
  if (currentUser()?.password_expired) location.hash = "#/account";
}

async function start(): Promise<void> {
  document.documentElement.lang = currentLang();
  try {
    const site = await api.site();
    setZone(site.timezone);
    setChartZone(site.timezone);
  } catch {
    // keep the default zone
  }
  await begin();
  window.setInterval(() => currentUser() && void store.refreshPanels().catch(() => undefined), 60_000);
  if ("serviceWorker" in navigator && location.protocol === "https:") {
    void navigator.serviceWorker.register("/sw.js").catch(() => undefined);
  }
}

void start();
