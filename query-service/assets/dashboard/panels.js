// The dashboard's panels: each one asks the query service for its numbers, draws them, and
// lists the same numbers in a table. A panel that fails says so and leaves the others alone.

import { graphql } from "./api.js";
import { bars, draw, funnel, groupedBars, heatmap, line } from "./charts.js";
import { formatDate, formatPoints, h, replace } from "./dom.js";

/** A card with a title, a status line, optional controls and a body. */
export function panel(id, title, { wide = false, note = "" } = {}) {
  const status = h("p", { class: "panel-status", role: "status" });
  const controls = h("div", { class: "controls" });
  const body = h("div", { class: "panel-body" });
  const root = h(
    "section",
    { class: wide ? "panel wide" : "panel", id: `panel-${id}`, "aria-labelledby": `title-${id}` },
    h("h2", { id: `title-${id}` }, title),
    note ? h("p", { class: "note" }, note) : null,
    controls,
    status,
    body,
  );
  return { root, status, controls, body };
}

/**
 * Runs `task` for `target`, showing progress and failures in its status line. A refused key
 * is passed to `onRefused` (the page then asks for a key again).
 */
export async function load(target, task, onRefused) {
  target.status.textContent = "Loading\u2026";
  target.status.classList.remove("error");
  try {
    await task();
    target.status.textContent = "";
  } catch (error) {
    if (error.refusedKey && onRefused) onRefused(error);
    target.status.textContent = error.message;
    target.status.classList.add("error");
  }
}

/** A chart area; `name` lets tests and scripts find the chart (`[data-chart=name]`). */
function chartArea(name, label, height = 320) {
  const element = h("div", {
    class: "chart",
    "data-chart": name,
    role: "img",
    "aria-label": label,
  });
  element.style.height = `${height}px`;
  return element;
}

/** The numbers of a chart as a table, folded away under the chart. */
export function dataTable(name, headers, rows, { open = false } = {}) {
  return h(
    "details",
    { class: "data", open },
    h("summary", {}, "Data"),
    table(name, headers, rows),
  );
}

export function table(name, headers, rows) {
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { "data-table": name },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map((header) => h("th", { scope: "col" }, header)),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            {},
            row.map((cell) =>
              typeof cell === "number"
                ? h("td", { class: "num" }, formatPoints(cell))
                : h("td", {}, cell === null || cell === undefined ? "\u2014" : cell),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Draws a chart into `target` once it is in the document (ECharts needs its size). */
function chart(target, name, label, option, height) {
  const area = chartArea(name, label, height);
  target.body.append(area);
  draw(area, option);
  return area;
}

// --- Segments -----------------------------------------------------------------------------

export async function rfmPanel(target, session) {
  const data = await graphql(
    session,
    "query($org: ID!) { rfmGrid(orgId: $org) { r f segment count } }",
  );
  const cells = data.rfmGrid;
  replace(target.body);
  chart(target, "rfm", "Members per recency and frequency score", heatmap(cells), 360);
  target.body.append(
    dataTable(
      "rfm",
      ["R", "F", "Segment", "Members"],
      cells.map((cell) => [cell.r, cell.f, cell.segment, cell.count]),
    ),
  );
}

export async function segmentsPanel(target, session) {
  const data = await graphql(
    session,
    "query($org: ID!) { segmentCounts(orgId: $org) { segment count } }",
  );
  const counts = data.segmentCounts;
  replace(target.body);
  chart(
    target,
    "segments",
    "Members per RFM segment",
    bars(
      counts.map((c) => c.segment),
      counts.map((c) => c.count),
      { name: "Members", horizontal: true },
    ),
    360,
  );
  target.body.append(
    dataTable(
      "segments",
      ["Segment", "Members"],
      counts.map((c) => [c.segment, c.count]),
    ),
  );
}

export async function transitionsPanel(target, session, days) {
  const data = await graphql(
    session,
    "query($org: ID!, $days: Int) { segmentTransitionCounts(orgId: $org, days: $days) { day from to count } }",
    { days },
  );
  const moves = data.segmentTransitionCounts;
  const dayList = [...new Set(moves.map((m) => m.day))].sort();
  const targets = [...new Set(moves.map((m) => m.to))];
  const series = targets.map((segment) => ({
    name: segment,
    values: dayList.map((day) =>
      moves.filter((m) => m.day === day && m.to === segment).reduce((sum, m) => sum + m.count, 0),
    ),
  }));
  replace(target.body);
  if (moves.length === 0) {
    target.body.append(h("p", { class: "empty" }, `No segment changes in the last ${days} days.`));
    return;
  }
  chart(
    target,
    "transitions",
    "Members moving into each segment, per day",
    groupedBars(dayList, series, { stacked: true }),
  );
  target.body.append(
    dataTable(
      "transitions",
      ["Day", "From", "To", "Members"],
      moves.map((m) => [m.day, m.from === null ? "(first scoring)" : m.from, m.to, m.count]),
    ),
  );
}

// --- Tiers and points -----------------------------------------------------------------------

export async function tiersPanel(target, session) {
  const data = await graphql(
    session,
    "query($org: ID!) { tierDistribution(orgId: $org) { tier count } }",
  );
  const tiers = data.tierDistribution;
  replace(target.body);
  chart(
    target,
    "tiers",
    "Members per tier",
    bars(
      tiers.map((t) => t.tier),
      tiers.map((t) => t.count),
      { name: "Members" },
    ),
  );
  target.body.append(
    dataTable(
      "tiers",
      ["Tier", "Members"],
      tiers.map((t) => [t.tier, t.count]),
    ),
  );
}

export async function liabilityPanel(target, session, days) {
  const data = await graphql(
    session,
    `
      query ($org: ID!, $days: Int) {
        liability(orgId: $org) {
          points
        }
        liabilityHistory(orgId: $org, days: $days) {
          day
          points
          change
        }
      }
    `,
    { days },
  );
  const history = data.liabilityHistory;
  replace(
    target.body,
    h(
      "p",
      { class: "kpi" },
      h(
        "span",
        { class: "kpi-value", "data-kpi": "liability" },
        formatPoints(data.liability.points),
      ),
      " points owed to members now",
    ),
  );
  chart(
    target,
    "liability",
    "Points owed to members at the end of each day",
    line(
      history.map((d) => d.day),
      history.map((d) => d.points),
      "Liability",
    ),
  );
  target.body.append(
    dataTable(
      "liability",
      ["Day", "Liability", "Change"],
      history.map((d) => [d.day, d.points, d.change]),
    ),
  );
}

// --- Leaderboards -----------------------------------------------------------------------------

export async function leaderboardPanel(target, session, period, locationId) {
  const data = await graphql(
    session,
    `
      query ($org: ID!, $period: Period!, $location: ID) {
        leaderboard(orgId: $org, period: $period, locationId: $location, first: 10) {
          rank
          memberId
          displayName
          points
        }
      }
    `,
    { period, location: locationId || null },
  );
  const entries = data.leaderboard;
  replace(target.body);
  // Says which board is shown (the pickers may have moved on while it loaded).
  target.body.dataset.board = `${period}/${locationId || ""}`;
  if (entries.length === 0) {
    target.body.append(h("p", { class: "empty" }, "No points earned in this period yet."));
    return;
  }
  target.body.append(
    table(
      "leaderboard",
      ["Rank", "Member", "Points"],
      entries.map((e) => [e.rank, e.displayName, e.points]),
    ),
  );
}

// --- Promotions -------------------------------------------------------------------------------

export async function promotionsPanel(target, session) {
  const data = await graphql(
    session,
    `
      query ($org: ID!) {
        promotionStats(orgId: $org) {
          promotionId
          name
          uses
          points
          members
          budgetPoints
          budgetLeft
        }
      }
    `,
  );
  const stats = data.promotionStats;
  replace(target.body);
  if (stats.length === 0) {
    target.body.append(h("p", { class: "empty" }, "The program has no promotions."));
    return;
  }
  const label = (s) => s.name || s.promotionId;
  chart(
    target,
    "promotions",
    "Points each promotion awarded",
    groupedBars(stats.map(label), [
      { name: "Points awarded", values: stats.map((s) => s.points) },
      { name: "Uses", values: stats.map((s) => s.uses) },
    ]),
  );
  target.body.append(
    table(
      "promotions",
      ["Promotion", "Uses", "Members", "Points", "Budget", "Budget left"],
      stats.map((s) => [label(s), s.uses, s.members, s.points, s.budgetPoints, s.budgetLeft]),
    ),
  );
}

// --- Achievements and simulations -------------------------------------------------------------

export async function funnelPanel(target, session) {
  const data = await graphql(
    session,
    `
      query ($org: ID!) {
        achievementFunnel(orgId: $org) {
          achievementId
          name
          members
          started
          unlocked
        }
      }
    `,
  );
  const rows = data.achievementFunnel;
  replace(target.body);
  if (rows.length === 0) {
    target.body.append(h("p", { class: "empty" }, "The program has no achievements."));
    return;
  }
  for (const row of rows) {
    const steps = [
      { name: "Members", value: row.members },
      { name: "Started", value: row.started },
      { name: "Unlocked", value: row.unlocked },
    ];
    target.body.append(h("h3", {}, row.name));
    chart(
      target,
      `funnel-${row.achievementId}`,
      `Funnel of ${row.name}`,
      funnel(steps, row.name),
      220,
    );
  }
  target.body.append(
    dataTable(
      "funnel",
      ["Achievement", "Members", "Started", "Unlocked"],
      rows.map((r) => [r.name, r.members, r.started, r.unlocked]),
    ),
  );
}

export async function simulationsPanel(target, session) {
  const data = await graphql(
    session,
    `
      query ($org: ID!) {
        simulations(orgId: $org) {
          simulationId
          createdAt
          from
          to
          purchases
          actualPoints
          draftPoints
          liabilityDelta
        }
      }
    `,
  );
  const simulations = data.simulations;
  replace(target.body);
  if (simulations.length === 0) {
    target.body.append(h("p", { class: "empty" }, "No simulations have been run."));
    return;
  }
  const names = simulations.map((s) => `${formatDate(s.from)} \u2013 ${formatDate(s.to)}`);
  chart(
    target,
    "simulations",
    "Points actually awarded and under each draft",
    groupedBars(names, [
      { name: "Actual", values: simulations.map((s) => s.actualPoints) },
      { name: "Draft", values: simulations.map((s) => s.draftPoints) },
    ]),
  );
  target.body.append(
    table(
      "simulations",
      ["Run", "Window", "Purchases", "Actual", "Draft", "Liability change"],
      simulations.map((s, i) => [
        formatDate(s.createdAt),
        names[i],
        s.purchases,
        s.actualPoints,
        s.draftPoints,
        s.liabilityDelta,
      ]),
    ),
  );
}
