// The dashboard's session and its GraphQL requests. The analyst key is entered once and kept
// in sessionStorage: it lives as long as the tab, is not shared with other tabs, and is never
// sent anywhere but this origin's /graphql.

const STORAGE_KEY = "loyalty-dashboard-session";

/** The signed-in org and key, or null. */
export function loadSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    if (session && typeof session.org === "string" && typeof session.key === "string") {
      return session;
    }
  } catch {
    // A damaged entry is the same as none.
  }
  return null;
}

export function saveSession(org, key) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ org, key }));
}

export function clearSession() {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** A GraphQL error: `code` is the first error's `extensions.code`. */
export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "ApiError";
    this.code = code || "UNKNOWN";
  }

  /** Whether the key itself was refused (the analyst must sign in again). */
  get refusedKey() {
    return this.code === "UNAUTHENTICATED" || this.code === "FORBIDDEN";
  }
}

/** Runs `query` as the signed-in analyst; resolves with `data`. */
export async function graphql(session, query, variables = {}) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${session.key}` },
      body: JSON.stringify({ query, variables: { org: session.org, ...variables } }),
    });
  } catch {
    throw new ApiError("The query service cannot be reached.", "NETWORK");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`The query service answered ${response.status}.`, "HTTP");
  }
  if (Array.isArray(body.errors) && body.errors.length > 0) {
    const first = body.errors[0];
    throw new ApiError(String(first.message), first.extensions && first.extensions.code);
  }
  return body.data;
}
