// The points panels: tiers, the liability over time, leaderboards and promotions.

import { graphql } from "./api.js";
import { bars, groupedBars, line } from "./charts.js";
import { formatPoints, h, replace } from "./dom.js";
import { chart, dataTable, table } from "./panels.js";

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
