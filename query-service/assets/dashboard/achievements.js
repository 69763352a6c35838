// The marketing panels: how far members got on each achievement, and the what-if
// simulation reports.

import { graphql } from "./api.js";
import { draw, funnel, groupedBars } from "./charts.js";
import { formatDate, h, replace } from "./dom.js";
import { chart, dataTable, table } from "./panels.js";

export async function funnelPanel(target, session) {
  const data = await graphql(
    session,
    `
      query ($org: ID!) {
        achievementStats(orgId: $org) {
          achievementId
          name
          target
          started
          halfway
          close
          unlocked
        }
      }
    `,
  );
  const rows = data.achievementStats;
  replace(target.body);
  if (rows.length === 0) {
    target.body.append(h("p", { class: "empty" }, "The program has no achievements."));
    return;
  }
  const label = (row) => row.name || row.achievementId;
  for (const row of rows) {
    const steps = [
      { name: "Started", value: row.started },
      { name: "Half way", value: row.halfway },
      { name: "Unlocked", value: row.unlocked },
    ];
    target.body.append(h("h3", {}, label(row)));
    chart(
      target,
      `funnel-${row.achievementId}`,
      `How far members got on ${label(row)}`,
      funnel(steps, label(row)),
      200,
    );
  }
  target.body.append(
    dataTable(
      "funnel",
      ["Achievement", "Started", "Half way", "Close (80 %+)", "Unlocked"],
      rows.map((r) => [label(r), r.started, r.halfway, r.close, r.unlocked]),
    ),
  );
}

const BREAKDOWNS = [
  ["byPromotion", "By promotion"],
  ["byTier", "By tier"],
  ["byLocation", "By location"],
  ["byWeek", "By week"],
];

/** The runs side by side, then one run's report broken down (the newest by default). */
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
          purchasesChanged
          actualPoints
          draftPoints
          liabilityDelta
          tierChangesTotal
          byPromotion {
            key
            actualPoints
            draftPoints
          }
          byTier {
            key
            actualPoints
            draftPoints
          }
          byLocation {
            key
            actualPoints
            draftPoints
          }
          byWeek {
            key
            actualPoints
            draftPoints
          }
        }
      }
    `,
  );
  const simulations = data.simulations;
  replace(target.body);
  replace(target.controls);
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
    260,
  );
  target.body.append(
    table(
      "simulations",
      [
        "Run",
        "Window",
        "Purchases",
        "Changed",
        "Actual",
        "Draft",
        "Liability change",
        "Tier changes",
      ],
      simulations.map((s, i) => [
        formatDate(s.createdAt),
        names[i],
        s.purchases,
        s.purchasesChanged,
        s.actualPoints,
        s.draftPoints,
        s.liabilityDelta,
        s.tierChangesTotal,
      ]),
    ),
  );

  const run = h(
    "select",
    { id: "simulation-run" },
    simulations.map((s, i) =>
      h("option", { value: String(i) }, `${formatDate(s.createdAt)} \u00b7 ${names[i]}`),
    ),
  );
  const by = h(
    "select",
    { id: "simulation-by" },
    BREAKDOWNS.map(([value, text]) => h("option", { value }, text)),
  );
  replace(
    target.controls,
    h("div", { class: "field" }, h("label", { for: "simulation-run" }, "Report"), run),
    h("div", { class: "field" }, h("label", { for: "simulation-by" }, "Breakdown"), by),
  );
  const detail = h("div", { class: "simulation-detail" });
  target.body.append(detail);
  const showDetail = () => {
    const simulation = simulations[Number(run.value)];
    const rows = simulation[by.value];
    replace(detail);
    if (rows.length === 0) {
      detail.append(h("p", { class: "empty" }, "Nothing to break down."));
      return;
    }
    const area = h("div", {
      class: "chart",
      "data-chart": "simulation-detail",
      role: "img",
      "aria-label": "Actual and draft points of the chosen report, broken down",
    });
    area.style.height = "260px";
    detail.append(area);
    draw(
      area,
      groupedBars(
        rows.map((r) => r.key),
        [
          { name: "Actual", values: rows.map((r) => r.actualPoints) },
          { name: "Draft", values: rows.map((r) => r.draftPoints) },
        ],
      ),
    );
    detail.append(
      dataTable(
        "simulation-detail",
        ["Key", "Actual", "Draft"],
        rows.map((r) => [r.key, r.actualPoints, r.draftPoints]),
      ),
    );
    detail.dataset.shown = `${simulation.simulationId}/${by.value}`;
  };
  run.addEventListener("change", showDetail);
  by.addEventListener("change", showDetail);
  showDetail();
}
