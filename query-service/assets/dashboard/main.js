// The analyst dashboard: asks for the org and an analyst key once per browser tab, then shows
// every panel. Sign out forgets the key.

import { clearSession, graphql, loadSession, saveSession } from "./api.js";
import { h, replace } from "./dom.js";
import { membersPanel } from "./members.js";
import { funnelPanel, simulationsPanel } from "./achievements.js";
import { load, panel } from "./panels.js";
import { leaderboardPanel, liabilityPanel, promotionsPanel, tiersPanel } from "./points.js";
import { rfmPanel, segmentsPanel, transitionsPanel } from "./segments.js";

const app = document.getElementById("app");
const who = document.getElementById("who");
const signOut = document.getElementById("sign-out");
const refresh = document.getElementById("refresh");

const PERIODS = [
  ["WEEK", "This week"],
  ["MONTH", "This month"],
  ["ALL_TIME", "All time"],
];

function showLogin(message) {
  who.textContent = "";
  signOut.hidden = true;
  refresh.hidden = true;
  const org = h("input", {
    id: "login-org",
    name: "org",
    required: true,
    autocomplete: "organization",
    pattern: "[a-z0-9][a-z0-9-]{0,62}",
  });
  const key = h("input", {
    id: "login-key",
    name: "key",
    type: "password",
    required: true,
    autocomplete: "off",
  });
  const error = h("p", { class: "form-error", role: "alert" }, message || "");
  const form = h(
    "form",
    { class: "login", "aria-labelledby": "login-title" },
    h("h2", { id: "login-title" }, "Sign in"),
    h("p", {}, "Enter your org and an analyst key. The key is kept in this browser tab only."),
    h("label", { for: "login-org" }, "Org"),
    org,
    h("label", { for: "login-key" }, "Analyst key"),
    key,
    error,
    h("button", { type: "submit" }, "Open dashboard"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const session = { org: org.value.trim(), key: key.value.trim() };
    error.textContent = "Checking\u2026";
    try {
      // Any analyst-only field proves the key is an analyst key of this org.
      await graphql(session, "query($org: ID!) { liability(orgId: $org) { points } }");
    } catch (failure) {
      error.textContent = failure.message;
      return;
    }
    saveSession(session.org, session.key);
    showDashboard(session);
  });
  replace(app, form);
  org.focus();
}

function refused(error) {
  clearSession();
  showLogin(`Signed out: ${error.message}`);
}

async function showDashboard(session) {
  who.textContent = `Org: ${session.org}`;
  signOut.hidden = false;
  refresh.hidden = false;
  const run = (target, task) => load(target, task, refused);

  const rfm = panel("rfm", "R \u00d7 F segment grid", {
    note: "Members per recency (R) and frequency (F) score; 5 is best.",
  });
  const segments = panel("segments", "Segments");
  const transitions = panel("transitions", "Segment changes, last 30 days", { wide: true });
  const tiers = panel("tiers", "Tier distribution");
  const liability = panel("liability", "Liability, last 90 days");
  const leaderboard = panel("leaderboard", "Leaderboard");
  const promotions = panel("promotions", "Promotions: performance and budgets", { wide: true });
  const funnel = panel("funnel", "Achievement funnels");
  const simulations = panel("simulations", "Simulation reports");
  const members = panel("members", "Members", { wide: true });

  replace(
    app,
    h(
      "div",
      { class: "grid" },
      [
        rfm,
        segments,
        transitions,
        tiers,
        liability,
        leaderboard,
        promotions,
        funnel,
        simulations,
        members,
      ].map((p) => p.root),
    ),
  );

  // The leaderboard's period and location pickers (locations from the program).
  const period = h(
    "select",
    { id: "board-period" },
    PERIODS.map(([v, t]) => h("option", { value: v }, t)),
  );
  const location = h(
    "select",
    { id: "board-location" },
    h("option", { value: "" }, "All locations"),
  );
  replace(
    leaderboard.controls,
    h("div", { class: "field" }, h("label", { for: "board-period" }, "Period"), period),
    h("div", { class: "field" }, h("label", { for: "board-location" }, "Location"), location),
  );
  const showBoard = () =>
    run(leaderboard, () => leaderboardPanel(leaderboard, session, period.value, location.value));
  period.addEventListener("change", showBoard);
  location.addEventListener("change", showBoard);

  const everything = () =>
    Promise.all([
      run(rfm, () => rfmPanel(rfm, session)),
      run(segments, () => segmentsPanel(segments, session)),
      run(transitions, () => transitionsPanel(transitions, session, 30)),
      run(tiers, () => tiersPanel(tiers, session)),
      run(liability, () => liabilityPanel(liability, session, 90)),
      showBoard(),
      run(promotions, () => promotionsPanel(promotions, session)),
      run(funnel, () => funnelPanel(funnel, session)),
      run(simulations, () => simulationsPanel(simulations, session)),
    ]);

  let program = { tiers: [], locations: [] };
  try {
    const data = await graphql(
      session,
      "query($org: ID!) { program(orgId: $org) { tiers { name } locations { locationId name } } }",
    );
    program = data.program || program;
  } catch (error) {
    if (error.refusedKey) return refused(error);
  }
  for (const loc of program.locations) {
    location.append(h("option", { value: loc.locationId }, loc.name));
  }
  membersPanel(
    members,
    session,
    program.tiers.map((t) => t.name),
    (task) => run(members, task),
  );
  refresh.onclick = async () => {
    refresh.disabled = true;
    await everything();
    refresh.disabled = false;
  };
  await everything();
  document.body.dataset.ready = "true";
}

signOut.addEventListener("click", () => {
  clearSession();
  document.body.dataset.ready = "";
  showLogin("Signed out.");
});

const session = loadSession();
if (session) showDashboard(session);
else showLogin();
