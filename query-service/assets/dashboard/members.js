// The member list: filtered by segment and tier, paged with the API's cursors (keyset paging:
// a member enrolling meanwhile never shifts a page). Previous pages are the cursors already seen.

import { graphql } from "./api.js";
import { h, replace } from "./dom.js";
import { table } from "./panels.js";

const SEGMENTS = [
  "Champions",
  "Loyal Customers",
  "Potential Loyalists",
  "New Customers",
  "Promising",
  "Need Attention",
  "About to Sleep",
  "At Risk",
  "Can't Lose Them",
  "Hibernating",
  "Lost",
];

const PAGE_SIZE = 20;

const QUERY = `query($org: ID!, $filter: MemberFilter, $order: MemberOrder!, $after: String) {
  members(orgId: $org, filter: $filter, orderBy: $order, first: ${PAGE_SIZE}, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes {
      memberId externalId displayName enrolledAt
      balance { points }
      tier { name }
      rfm { segment r f m }
    }
  }
}`;

function select(label, name, options) {
  const id = `members-${name}`;
  return {
    label: h("label", { for: id }, label),
    element: h(
      "select",
      { id, name },
      options.map(([value, text]) => h("option", { value }, text)),
    ),
  };
}

/** Sets up the filters and paging in `target` and shows the first page. */
export function membersPanel(target, session, tiers, onLoad) {
  const segment = select("Segment", "segment", [
    ["", "All segments"],
    ...SEGMENTS.map((s) => [s, s]),
  ]);
  const tier = select("Tier", "tier", [["", "All tiers"], ...tiers.map((t) => [t, t])]);
  const order = select("Order", "order", [
    ["ENROLLED_AT", "Oldest first"],
    ["POINTS_DESC", "Most points first"],
  ]);
  const previous = h("button", { type: "button", "data-action": "previous" }, "\u2190 Previous");
  const next = h("button", { type: "button", "data-action": "next" }, "Next \u2192");
  const pageLabel = h("span", { class: "page-label", "aria-live": "polite" });
  const results = h("div", { class: "members" });
  replace(
    target.controls,
    h("div", { class: "field" }, segment.label, segment.element),
    h("div", { class: "field" }, tier.label, tier.element),
    h("div", { class: "field" }, order.label, order.element),
  );
  replace(target.body, results, h("div", { class: "pager" }, previous, pageLabel, next));

  // cursors[i] is the `after` of page i (null for the first page).
  let cursors = [null];
  let page = 0;

  const show = () =>
    onLoad(async () => {
      const filter = {};
      if (segment.element.value) filter.segment = segment.element.value;
      if (tier.element.value) filter.tier = tier.element.value;
      const data = await graphql(session, QUERY, {
        filter,
        order: order.element.value,
        after: cursors[page],
      });
      const { nodes, pageInfo } = data.members;
      cursors = cursors.slice(0, page + 1);
      if (pageInfo.hasNextPage) cursors.push(pageInfo.endCursor);
      replace(
        results,
        nodes.length === 0
          ? h("p", { class: "empty" }, "No member matches these filters.")
          : table(
              "members",
              ["Member", "External id", "Tier", "Points", "Segment", "R F M"],
              nodes.map((m) => [
                m.displayName || m.memberId,
                m.externalId,
                m.tier.name,
                m.balance.points,
                m.rfm ? m.rfm.segment : null,
                m.rfm ? `${m.rfm.r} ${m.rfm.f} ${m.rfm.m}` : null,
              ]),
            ),
      );
      pageLabel.textContent = `Page ${page + 1}`;
      previous.disabled = page === 0;
      next.disabled = !pageInfo.hasNextPage;
    });

  const restart = () => {
    cursors = [null];
    page = 0;
    show();
  };
  for (const control of [segment.element, tier.element, order.element]) {
    control.addEventListener("change", restart);
  }
  previous.addEventListener("click", () => {
    if (page > 0) {
      page -= 1;
      show();
    }
  });
  next.addEventListener("click", () => {
    if (page + 1 < cursors.length) {
      page += 1;
      show();
    }
  });
  show();
}
