// What every panel of the dashboard is made of: a card with a status line, its charts, and
// the same numbers in a table. A panel that fails says so and leaves the others alone.

import { draw } from "./charts.js";
import { formatPoints, h } from "./dom.js";

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
export function chart(target, name, label, option, height) {
  const area = chartArea(name, label, height);
  target.body.append(area);
  draw(area, option);
  return area;
}
