// Change my password.
import { ApiError, auth } from "../api";
import { append, h, setText } from "../dom";
import { t } from "../i18n";
import { currentUser } from "../session";

export function renderAccount(root: HTMLElement): () => void {
  const me = currentUser();
  const current = h("input", { type: "password", autocomplete: "current-password", required: true, "data-testid": "current-password" });
  const next = h("input", { type: "password", autocomplete: "new-password", required: true, "data-testid": "new-password" });
  const message = h("p", { role: "status", "data-testid": "password-message" });
  const form = h(
    "form",
    { class: "meta narrow" },
    h("label", {}, h("span", {}, t("currentPassword")), current),
    h("label", {}, h("span", {}, t("newPassword")), next),
    h("button", { type: "submit" }, t("changePassword")),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await auth.changePassword(current.value, next.value);
      setText(message, t("passwordChanged"));
      current.value = next.value = "";
    } catch (err) {
      setText(message, err instanceof ApiError ? err.message : String(err));
    }
  });
  append(
    root,
    h("h1", {}, t("changePassword")),
    h("p", { class: "muted" }, `${me?.username ?? ""} · ${me?.role ?? ""}`),
    me?.password_expired ? h("p", { class: "error" }, t("passwordExpired")) : null,
    form,
  );
  return () => undefined;
}
