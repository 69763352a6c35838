// The widget's connection to the query service: queries and mutations over HTTP, live updates
// over a websocket speaking graphql-transport-ws. Credentials travel as SPEC §11 says: the
// publishable key as `Authorization: Bearer`, the customer token as `X-Customer-Token` (HTTP)
// or both in the `connection_init` payload (websocket).

/**
 * A GraphQL error answer: the `extensions.code` of its first error and, where the server
 * gives one, its `extensions.reason` (why a token or a command was refused).
 */
class GraphqlError extends Error {
  constructor(message, code, reason, status) {
    super(message);
    this.name = "GraphqlError";
    this.code = code || "UNKNOWN";
    this.reason = reason || null;
    this.status = status;
  }

  static of(error, status) {
    const extensions = (error && error.extensions) || {};
    return new GraphqlError(
      String((error && error.message) || "Request failed"),
      extensions.code,
      extensions.reason,
      status,
    );
  }
}

class GraphqlClient {
  /**
   * @param {string} endpoint the query service's origin, e.g. `https://loyalty.example.com`
   * @param {{publishableKey: string, customerToken: string | null}} credentials
   */
  constructor(endpoint, credentials) {
    this.endpoint = endpoint.replace(/\/+$/, "");
    this.credentials = credentials;
  }

  headers() {
    const headers = { "Content-Type": "application/json" };
    if (this.credentials.publishableKey) {
      headers.Authorization = `Bearer ${this.credentials.publishableKey}`;
    }
    if (this.credentials.customerToken) {
      headers["X-Customer-Token"] = this.credentials.customerToken;
    }
    return headers;
  }

  /** Runs a query or mutation; resolves with `data`, rejects with a GraphqlError. */
  async request(query, variables) {
    let response;
    try {
      response = await fetch(`${this.endpoint}/graphql`, {
        method: "POST",
        headers: this.headers(),
        body: JSON.stringify({ query, variables }),
        credentials: "omit",
      });
    } catch {
      throw new GraphqlError("The loyalty service cannot be reached.", "NETWORK");
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new GraphqlError(
        `The loyalty service answered ${response.status}.`,
        "HTTP",
        null,
        response.status,
      );
    }
    if (Array.isArray(body.errors) && body.errors.length > 0) {
      throw GraphqlError.of(body.errors[0], response.status);
    }
    return body.data;
  }

  /**
   * Subscribes over a websocket and keeps the subscription alive: reconnects with back-off
   * after a drop (re-subscribing), until `close()`. `onNext(data)` gets each result,
   * `onError(error)` a refusal (then no reconnect: the credentials will not get better), and
   * `onReconnect()` each successful re-subscription after a drop (to catch up on what the
   * gap missed).
   */
  subscribe(query, variables, { onNext, onError, onReconnect }) {
    const url = `${this.endpoint.replace(/^http/, "ws")}/graphql/ws`;
    const payload = {};
    if (this.credentials.publishableKey) {
      payload.Authorization = `Bearer ${this.credentials.publishableKey}`;
    }
    if (this.credentials.customerToken) {
      payload["X-Customer-Token"] = this.credentials.customerToken;
    }
    let socket = null;
    let closed = false;
    let attempts = 0;
    let everConnected = false;
    let retry = null;

    const connect = () => {
      let acked = false;
      socket = new WebSocket(url, "graphql-transport-ws");
      socket.addEventListener("open", () => {
        socket.send(JSON.stringify({ type: "connection_init", payload }));
      });
      socket.addEventListener("message", (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        switch (message.type) {
          case "connection_ack":
            acked = true;
            socket.send(
              JSON.stringify({ id: "1", type: "subscribe", payload: { query, variables } }),
            );
            if (everConnected && onReconnect) onReconnect();
            everConnected = true;
            attempts = 0;
            break;
          case "ping":
            socket.send(JSON.stringify({ type: "pong" }));
            break;
          case "next":
            if (message.payload && message.payload.data) onNext(message.payload.data);
            if (message.payload && Array.isArray(message.payload.errors)) {
              closed = true;
              onError(GraphqlError.of(message.payload.errors[0]));
              socket.close();
            }
            break;
          case "error":
            closed = true;
            onError(GraphqlError.of(Array.isArray(message.payload) ? message.payload[0] : null));
            socket.close();
            break;
          default:
            break;
        }
      });
      socket.addEventListener("close", (event) => {
        if (closed) return;
        // A close before the ack with a protocol error (1002, or 4401 / 4403 from other
        // servers) is the server refusing the connection_init's credentials: final.
        if (!acked && (event.code === 1002 || event.code === 4401 || event.code === 4403)) {
          closed = true;
          // The reason is the server's refusal message (e.g. "the customer token has expired").
          const expired = /expired/i.test(event.reason);
          onError(
            new GraphqlError(
              event.reason || "Live updates refused",
              "INVALID_CUSTOMER_TOKEN",
              expired ? "expired" : null,
            ),
          );
          return;
        }
        attempts += 1;
        const delay = Math.min(30000, 500 * 2 ** Math.min(attempts, 6));
        retry = setTimeout(connect, delay * (0.75 + Math.random() / 2));
      });
    };
    connect();
    return {
      close() {
        closed = true;
        clearTimeout(retry);
        if (socket) socket.close();
      },
    };
  }
}

/** The claims of a JWT, read without verifying it (the server verifies); null if unreadable. */
function readTokenClaims(token) {
  if (!token) return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}
