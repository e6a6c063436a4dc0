// Admin pages: users, API keys, audit log. Shown only to those allowed; the API refuses anyway.
import { admin, ApiError, type KeyRow, type UserRow } from "../api";
import { clear, h, setText } from "../dom";
import { dateTime, t } from "../i18n";
import { can } from "../session";

const ROLES = ["viewer", "operator", "admin", "super_admin"];

function noAccess(root: HTMLElement): () => void {
  root.append(h("h1", {}, t("noAccess")));
  return () => undefined;
}

function regionsFrom(text: string): string[] | null {
  const list = text.split(",").map((r) => r.trim()).filter(Boolean);
  return list.length ? list : null;
}

function errorText(err: unknown): string {
  return err instanceof ApiError ? err.message : String(err);
}

export function renderUsers(root: HTMLElement): () => void {
  if (!can("users")) return noAccess(root);
  const table = h("table", { class: "rejected", "data-testid": "users-table" });
  const message = h("p", { role: "status", "data-testid": "users-message" });
  const username = h("input", { placeholder: t("username"), required: true, "data-testid": "new-username" });
  const password = h("input", { type: "password", placeholder: t("password"), required: true, autocomplete: "new-password", "data-testid": "new-user-password" });
  const role = h("select", { "data-testid": "new-role" }, ...ROLES.map((r) => h("option", { value: r }, r)));
  const regions = h("input", { placeholder: t("regions") });
  const form = h("form", { class: "toolbar" }, username, password, role, regions, h("button", { type: "submit" }, t("create")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await admin.createUser({ username: username.value.trim(), password: password.value, role: role.value, regions: regionsFrom(regions.value) });
      username.value = password.value = regions.value = "";
      setText(message, "");
      await load();
    } catch (err) {
      setText(message, errorText(err));
    }
  });

  async function act(fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
      setText(message, "");
      await load();
    } catch (err) {
      setText(message, errorText(err));
    }
  }

  async function load(): Promise<void> {
    let users: UserRow[] = [];
    try {
      users = await admin.users();
    } catch (err) {
      setText(message, errorText(err));
    }
    clear(table);
    table.append(h("thead", {}, h("tr", {}, ...[t("username"), t("role"), t("regions"), "", ""].map((c) => h("th", {}, c)))));
    const body = h("tbody");
    for (const u of users) {
      body.append(
        h("tr", { "data-user": u.username },
          h("td", {}, u.username),
          h("td", {}, u.role),
          h("td", {}, u.regions ? u.regions.join(", ") : "–"),
          h("td", {}, [u.disabled ? t("disabled") : "", u.locked ? t("locked") : ""].filter(Boolean).join(" · ")),
          h("td", {},
            u.locked ? h("button", { type: "button", onclick: () => void act(() => admin.unlockUser(u.id)) }, t("unlock")) : null,
            h("button", { type: "button", onclick: () => void act(() => admin.updateUser(u.id, { disabled: !u.disabled })) }, u.disabled ? t("enable") : t("disable")))),
      );
    }
    table.append(body);
  }

  root.append(h("h1", {}, t("users")), form, message, table);
  void load();
  return () => undefined;
}

export function renderKeys(root: HTMLElement): () => void {
  if (!can("api_keys")) return noAccess(root);
  const table = h("table", { class: "rejected", "data-testid": "keys-table" });
  const message = h("p", { role: "status" });
  const shown = h("p", { class: "mono", "data-testid": "new-key" });
  const name = h("input", { placeholder: "name", required: true });
  const scope = h("select", {}, ...["ingest", "read", "admin"].map((s) => h("option", { value: s }, s)));
  const panel = h("input", { placeholder: "panel (optional)" });
  const region = h("input", { placeholder: `${t("region")} (optional)` });
  const form = h("form", { class: "toolbar" }, name, scope, panel, region, h("button", { type: "submit" }, t("create")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await admin.createKey({ name: name.value.trim(), scopes: [scope.value], panel_id: panel.value.trim() || null, region: region.value.trim() || null });
      setText(shown, `${t("keyShownOnce")} ${created.key ?? ""}`);
      name.value = panel.value = region.value = "";
      await load();
    } catch (err) {
      setText(message, errorText(err));
    }
  });

  async function load(): Promise<void> {
    let keys: KeyRow[] = [];
    try {
      keys = await admin.keys();
    } catch (err) {
      setText(message, errorText(err));
    }
    clear(table);
    table.append(h("thead", {}, h("tr", {}, ...["name", "prefix", t("scopes"), t("panels"), "last used", "", ""].map((c) => h("th", {}, c)))));
    const body = h("tbody");
    for (const k of keys) {
      body.append(
        h("tr", {},
          h("td", {}, k.name),
          h("td", { class: "mono" }, k.prefix),
          h("td", {}, k.scopes.join(", ")),
          h("td", {}, k.panel_id ?? k.region ?? "–"),
          h("td", {}, k.last_used_at ? dateTime(Date.parse(k.last_used_at)) : "–"),
          h("td", {}, k.active ? t("active") : t("inactive")),
          h("td", {}, k.active ? h("button", { type: "button", onclick: async () => { await admin.revokeKey(k.id).catch((e) => setText(message, errorText(e))); await load(); } }, t("revoke")) : null)),
      );
    }
    table.append(body);
  }

  root.append(h("h1", {}, t("apiKeys")), form, shown, message, table);
  void load();
  return () => undefined;
}

export function renderAudit(root: HTMLElement): () => void {
  if (!can("audit")) return noAccess(root);
  const table = h("table", { class: "rejected", "data-testid": "audit-table" });
  const actor = h("input", { placeholder: t("actor") });
  const action = h("input", { placeholder: t("action") });
  const form = h("form", { class: "toolbar" }, actor, action, h("button", { type: "submit" }, t("filter")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void load();
  });

  async function load(): Promise<void> {
    const params = new URLSearchParams({ limit: "200" });
    if (actor.value.trim()) params.set("actor", actor.value.trim());
    if (action.value.trim()) params.set("action", action.value.trim());
    const rows = await admin.audit(params).catch(() => []);
    clear(table);
    table.append(h("thead", {}, h("tr", {}, ...[t("time"), t("actor"), t("action"), t("target"), t("address"), t("result"), ""].map((c) => h("th", {}, c)))));
    const body = h("tbody");
    for (const r of rows) {
      body.append(
        h("tr", {},
          h("td", {}, dateTime(Date.parse(r.at))),
          h("td", {}, r.actor),
          h("td", {}, r.action),
          h("td", {}, r.target ?? ""),
          h("td", {}, r.address ?? ""),
          h("td", {}, r.success ? t("succeeded") : t("failed")),
          h("td", { class: "mono" }, r.details ? JSON.stringify(r.details) : "")),
      );
    }
    table.append(body);
  }

  root.append(h("h1", {}, t("audit")), form, table);
  void load();
  return () => undefined;
}
