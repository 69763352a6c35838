// Building DOM without HTML strings, shared by the widget and the dashboard. Every text they
// show comes from the network (a member's display name, reward and promotion names) and goes
// in as a text node, never as markup; lint forbids innerHTML and friends everywhere.
//
// A plain script (no module syntax): the widget is one classic script made of such parts; the
// dashboard gets it as a module with an export list appended (see query-service/src/web).

/**
 * `h("p", { class: "x", "aria-live": "polite" }, "text", child)`: an element with attributes
 * (set with setAttribute, so never parsed as HTML) and children (strings become text nodes;
 * null and false are skipped).
 */
function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Replaces the children of `element`. */
function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

const numberFormat = new Intl.NumberFormat(undefined);
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});

function formatPoints(points) {
  return numberFormat.format(points);
}

/** `+25`, `−40`, `0`: a signed points movement (a real minus sign for screen readers). */
function formatDelta(points) {
  if (points > 0) return `+${numberFormat.format(points)}`;
  if (points < 0) return `\u2212${numberFormat.format(-points)}`;
  return "0";
}

function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : dateFormat.format(date);
}

function formatDateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : dateTimeFormat.format(date);
}

/** An amount in minor units as money, e.g. `€23.50` (currency from the program). */
function formatMoney(amountMinor, currency) {
  if (!currency) return numberFormat.format(amountMinor);
  try {
    const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    const digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(amountMinor / 10 ** digits);
  } catch {
    return `${numberFormat.format(amountMinor)} ${currency}`;
  }
}

/** A progress bar with its accessible name and value text. */
function progressBar(label, value, max, valueText) {
  const ratio = max > 0 ? Math.max(0, Math.min(1, value / max)) : 1;
  const fill = h("span", { class: "fill" });
  fill.style.width = `${Math.round(ratio * 100)}%`;
  return h(
    "span",
    {
      class: "bar",
      role: "progressbar",
      "aria-label": label,
      "aria-valuemin": 0,
      "aria-valuemax": max,
      "aria-valuenow": Math.max(0, Math.min(value, max)),
      "aria-valuetext": valueText,
    },
    fill,
  );
}
