// The demo shop's script: asks its "backend" (the query service's demo endpoint) for a
// customer token for the chosen shopper and hands it to the widget.

(() => {
  "use strict";

  const host = document.getElementById("widget-host");
  const picker = document.getElementById("member");
  const status = document.getElementById("demo-status");

  async function show(member) {
    status.textContent = "";
    let session;
    try {
      const response = await fetch(`/widget-demo/session?member=${encodeURIComponent(member)}`);
      session = await response.json();
      if (!response.ok) throw new Error(session.message || `status ${response.status}`);
    } catch (error) {
      status.textContent = `The demo could not sign in ${member}: ${error.message}`;
      return;
    }
    const widget = document.createElement("loyalty-widget");
    widget.setAttribute("org", session.org);
    widget.setAttribute("publishable-key", session.publishable_key);
    widget.setAttribute("customer-token", session.customer_token);
    host.replaceChildren(widget);
  }

  const initial = new URLSearchParams(location.search).get("member");
  if (initial) picker.value = initial;
  picker.addEventListener("change", () => show(picker.value));
  show(picker.value);
})();
