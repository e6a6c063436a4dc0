// The login page: clear errors, no hint whether the user exists.
import { ApiError, auth } from "../api";
import { h, setText } from "../dom";
import { t } from "../i18n";

export function renderLogin(root: HTMLElement, onLoggedIn: () => void): void {
  const username = h("input", { name: "username", autocomplete: "username", required: true, "data-testid": "login-username" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, "data-testid": "login-password" });
  const error = h("p", { class: "error", role: "alert", "data-testid": "login-error" });
  const button = h("button", { type: "submit", "data-testid": "login-submit" }, t("logIn"));
  const form = h(
    "form",
    { class: "login", "data-testid": "login-form" },
    h("h1", {}, "PELBIOT"),
    h("label", {}, h("span", {}, t("username")), username),
    h("label", {}, h("span", {}, t("password")), password),
    button,
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setText(error, "");
    button.disabled = true;
    try {
      await auth.login(username.value.trim(), password.value);
      onLoggedIn();
    } catch (err) {
      password.value = "";
      if (err instanceof ApiError && err.status === 429) {
        setText(error, `${t("tooManyAttempts")} ${err.message}`);
      } else {
        setText(error, err instanceof Error ? err.message : String(err));
      }
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  root.append(form);
  username.focus();
}
