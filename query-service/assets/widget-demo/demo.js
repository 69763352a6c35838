// The demo shop's script. Its "backend" is the query service's demo endpoint, which signs a
// customer token for the chosen shopper; the org and its publishable key come in this page's
// URL (`/widget-demo?org=demo&key=<publishable key>`, as scripts/run.sh prints it).

(() => {
  "use strict";

  const params = new URLSearchParams(location.search);
  const org = params.get("org");
  const key = params.get("key");
  const host = document.getElementById("widget-host");
  const picker = document.getElementById("member");
  const status = document.getElementById("demo-status");

  async function show(member) {
    status.textContent = "";
    let answer;
    try {
      const query = new URLSearchParams({ org, member });
      const response = await fetch(`/widget-demo/token?${query}`);
      answer = await response.json();
      if (!response.ok) throw new Error(answer.message || `status ${response.status}`);
    } catch (error) {
      status.textContent = `The demo could not sign in ${member}: ${error.message}`;
      return;
    }
    const widget = document.createElement("loyalty-widget");
    widget.setAttribute("org", org);
    widget.setAttribute("publishable-key", key);
    widget.setAttribute("customer-token", answer.customer_token);
    host.replaceChildren(widget);
  }

  if (!org || !key) {
    status.textContent =
      "Open this page with the org and its publishable key in the address, " +
      "e.g. /widget-demo?org=demo&key=<publishable key> (scripts/run.sh prints it).";
    return;
  }
  const member = params.get("member");
  if (member && ![...picker.options].some((option) => option.value === member)) {
    picker.append(new Option(member, member));
  }
  if (member) picker.value = member;
  picker.addEventListener("change", () => show(picker.value));
  show(picker.value);
})();
