// The segment panels: the R × F grid, the segment sizes and the moves between segments.

import { graphql } from "./api.js";
import { bars, groupedBars, heatmap } from "./charts.js";
import { h, replace } from "./dom.js";
import { chart, dataTable } from "./panels.js";

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
