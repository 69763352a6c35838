// The widget's style sheet, inside its shadow root: the host page's CSS cannot reach in, and
// `all: initial` on the host stops inherited properties (font, colour, line height) leaking in.
// A host may theme it on purpose through the --lw-* custom properties. Colours keep a
// contrast of at least 4.5:1 against their background (WCAG AA).

const WIDGET_CSS = `
:host {
  all: initial;
  display: block;
  box-sizing: border-box;
  max-width: 100%;
  container-type: inline-size;
  font-family: var(--lw-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
  font-size: 15px;
  line-height: 1.45;
  color: var(--lw-text, #1b1f2a);
  --accent: var(--lw-accent, #1d4ed8);
  --accent-text: var(--lw-accent-text, #ffffff);
  --muted: var(--lw-muted, #535a69);
  --surface: var(--lw-surface, #ffffff);
  --line: var(--lw-line, #d5d9e2);
  --good: #146c2e;
  --bad: #b3261e;
}
:host([hidden]) { display: none; }
*, *::before, *::after { box-sizing: border-box; }
.card {
  background: var(--surface);
  border: 1px solid var(--line);
  border-radius: 14px;
  padding: 16px;
  display: grid;
  gap: 14px;
  grid-template-columns: minmax(0, 1fr);
}
/* Two columns when the widget itself is wide, whatever the viewport. */
@container (min-width: 720px) {
  .card { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .card > header, .card > .status, .card > .activity-slot { grid-column: 1 / -1; }
}
header { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 8px; }
h2 { font-size: 1.1em; margin: 0; }
h3 { font-size: 0.95em; margin: 0 0 6px; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); }
p { margin: 4px 0; }
ul, ol { list-style: none; margin: 0; padding: 0; }
.balance { display: flex; align-items: baseline; gap: 6px; }
.balance .points { font-size: 2em; font-weight: 700; font-variant-numeric: tabular-nums; }
.balance .unit { color: var(--muted); }
.muted { color: var(--muted); }
.status:empty { display: none; }
.status { padding: 10px 12px; border-radius: 10px; background: #eef2ff; }
.status.error { background: #fdecea; color: var(--bad); border: 1px solid #f3b8b3; }
.section { min-width: 0; }
.bar { display: block; height: 10px; border-radius: 5px; background: #e4e7ee; overflow: hidden; margin: 6px 0; }
.bar .fill { display: block; height: 100%; background: var(--accent); border-radius: 5px; transition: width 0.4s; }
.keep.warn { color: var(--bad); font-weight: 600; }
.stamps li, .promotions li, .achievements li { padding: 6px 0; border-bottom: 1px solid var(--line); display: grid; gap: 2px; }
.dots { display: flex; flex-wrap: wrap; gap: 4px; }
.dot { width: 14px; height: 14px; border-radius: 50%; border: 2px solid var(--accent); }
.dot.on { background: var(--accent); }
.count, .effect { color: var(--muted); font-size: 0.93em; }
.rewards li { display: flex; align-items: center; gap: 8px; padding: 6px 0; border-bottom: 1px solid var(--line); }
.rewards .name { flex: 1; min-width: 0; overflow-wrap: anywhere; }
.rewards .cost { color: var(--muted); white-space: nowrap; }
button {
  font: inherit;
  min-height: 36px;
  padding: 6px 14px;
  border-radius: 8px;
  border: 1px solid var(--accent);
  background: var(--accent);
  color: var(--accent-text);
  cursor: pointer;
}
button[disabled] { opacity: 0.65; cursor: progress; }
button:focus-visible, summary:focus-visible, a:focus-visible {
  outline: 3px solid #f59e0b;
  outline-offset: 2px;
}
.outcomes li { margin-top: 6px; padding: 6px 10px; border-radius: 8px; background: #e8f5ec; color: var(--good); }
.outcomes li.error { background: #fdecea; color: var(--bad); }
.badges { display: flex; flex-wrap: wrap; gap: 6px; }
.badges li { padding: 4px 10px; border-radius: 999px; background: #fef3c7; color: #5c3d00; }
.ranks li { padding: 2px 0; }
.activity li { display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 0 8px; padding: 8px 0; border-bottom: 1px solid var(--line); }
.activity .when { color: var(--muted); font-size: 0.88em; grid-column: 1; }
.activity .delta { grid-column: 2; grid-row: 1 / span 2; align-self: center; font-weight: 700; font-variant-numeric: tabular-nums; }
.delta.plus { color: var(--good); }
.delta.minus { color: var(--bad); }
.breakdown { grid-column: 1 / -1; font-size: 0.92em; }
.breakdown summary { cursor: pointer; color: var(--accent); }
.breakdown dl { display: grid; grid-template-columns: minmax(0, 1fr) auto; margin: 4px 0 0; gap: 2px 12px; }
.breakdown dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (prefers-reduced-motion: reduce) { .bar .fill { transition: none; } }
`;

/** Puts the style sheet into `root`: a constructed sheet where supported (CSP-friendly). */
function adoptStyles(root) {
  if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === "function") {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(WIDGET_CSS);
      root.adoptedStyleSheets = [sheet];
      return;
    } catch {
      // Older engines: fall through to a <style> element.
    }
  }
  root.append(h("style", {}, WIDGET_CSS));
}
