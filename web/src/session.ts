// Who is logged in, and what they may do. The API enforces it; the UI only hides what it refuses.
import { ApiError, auth, type Me } from "./api";

let me: Me | null = null;

export function currentUser(): Me | null {
  return me;
}

export function can(permission: string): boolean {
  return !!me && me.permissions.includes(permission);
}

/** Load the session: a user, the anonymous viewer (when the site allows it), or nobody. */
export async function loadSession(): Promise<Me | null> {
  try {
    me = await auth.me();
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      // anonymous read-only access is on: the API let us in but we have no account
      me = { kind: "anonymous", username: "anonymous", role: "viewer", regions: null, permissions: ["read"], password_expired: false };
    } else {
      me = null;
    }
  }
  return me;
}

export function clearSession(): void {
  me = null;
}
