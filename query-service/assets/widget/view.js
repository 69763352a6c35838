// The widget's sections, each a pure function from the member's view to DOM nodes.

const EVENT_LABELS = {
  PurchaseRecorded: "Purchase",
  PurchaseRefunded: "Refund",
  RewardRedeemed: "Reward redeemed",
  PointsAdjusted: "Points adjusted",
  PointsExpired: "Points expired",
  TierUpgraded: "Tier upgraded",
  TierDowngraded: "Tier downgraded",
  StampCollected: "Stamp collected",
  StampCardCompleted: "Stamp card completed",
  AchievementUnlocked: "Achievement unlocked",
  MemberEnrolled: "Joined",
};

const PERIOD_LABELS = { WEEK: "this week", MONTH: "this month", ALL_TIME: "all time" };

function section(id, title, ...body) {
  return h(
    "section",
    { class: "section", "aria-labelledby": `lw-${id}` },
    h("h3", { id: `lw-${id}` }, title),
    ...body,
  );
}

function empty(text) {
  return h("p", { class: "muted" }, text);
}

/** The tier, a bar to the next one, and what keeping it takes. */
function tierSection(tier, program) {
  const ladder = (program && program.tiers) || [];
  const index = ladder.findIndex((rung) => rung.name === tier.name);
  const floor = index >= 0 ? ladder[index].thresholdPoints : 0;
  const next = index >= 0 ? ladder[index + 1] : null;
  const parts = [];
  if (tier.nextTier && tier.pointsToNext !== null && next) {
    const span = next.thresholdPoints - floor;
    const done = Math.max(0, tier.qualifyingPoints - floor);
    parts.push(
      progressBar(
        `Progress to ${tier.nextTier}`,
        done,
        span,
        `${formatPoints(tier.qualifyingPoints)} of ${formatPoints(next.thresholdPoints)} qualifying points`,
      ),
      h("p", { class: "to-next" }, `${formatPoints(tier.pointsToNext)} points to ${tier.nextTier}`),
    );
  } else {
    parts.push(
      progressBar("Tier progress", 1, 1, "Top tier reached"),
      h("p", { class: "to-next" }, "You have reached the top tier."),
    );
  }
  if (tier.inGrace || (tier.pointsToKeep && tier.pointsToKeep > 0)) {
    const by = tier.keepBy ? ` by ${formatDate(tier.keepBy)}` : " before the next review";
    parts.push(
      h(
        "p",
        { class: tier.inGrace ? "keep warn" : "keep" },
        `Earn ${formatPoints(tier.pointsToKeep || 0)} more qualifying points${by} to keep ${tier.name}.`,
      ),
    );
  } else if (index > 0) {
    parts.push(h("p", { class: "keep" }, `Your ${tier.name} tier is secure.`));
  }
  return section(
    "tier",
    "Tier",
    h(
      "p",
      { class: "tier-name" },
      h("strong", {}, tier.name),
      ` \u00b7 ${formatPoints(tier.qualifyingPoints)} qualifying points`,
    ),
    ...parts,
  );
}

function expiryLine(nextExpiry) {
  if (!nextExpiry) return h("p", { class: "expiry muted" }, "No points are due to expire.");
  return h(
    "p",
    { class: "expiry" },
    `${formatPoints(nextExpiry.points)} points expire on ${formatDate(nextExpiry.date)}.`,
  );
}

/** Every stamp card of the program, with the member's progress on it. */
function stampSection(cards, program) {
  const progress = new Map((cards || []).map((card) => [card.cardId, card]));
  const definitions = (program && program.stampCards) || [];
  if (definitions.length === 0) return null;
  return section(
    "stamps",
    "Stamp cards",
    h(
      "ul",
      { class: "stamps" },
      definitions.map((card) => {
        const mine = progress.get(card.cardId);
        const stamps = mine ? mine.stamps : 0;
        const dots = h("span", { class: "dots", "aria-hidden": "true" });
        for (let i = 0; i < card.stampsRequired; i += 1) {
          dots.append(h("span", { class: i < stamps ? "dot on" : "dot" }));
        }
        return h(
          "li",
          {},
          h("span", { class: "name" }, card.name),
          dots,
          h(
            "span",
            { class: "count" },
            `${stamps} of ${card.stampsRequired} stamps`,
            mine && mine.cardsCompleted > 0 ? ` \u00b7 ${mine.cardsCompleted} completed` : "",
          ),
        );
      }),
    ),
  );
}

/**
 * Rewards the balance covers now, each with a redeem button, and the next one within reach.
 * `pending` is the set of reward ids being redeemed (their buttons are disabled).
 */
function rewardsSection(points, program, pending, onRedeem) {
  const rewards = ((program && program.rewards) || [])
    .filter((reward) => reward.active)
    .sort((a, b) => a.pointsCost - b.pointsCost);
  const affordable = rewards.filter((reward) => points >= reward.pointsCost);
  const next = rewards.find((reward) => points < reward.pointsCost);
  const list = h(
    "ul",
    { class: "rewards" },
    affordable.map((reward) => {
      const busy = pending.has(reward.rewardId);
      const button = h(
        "button",
        {
          type: "button",
          class: "redeem",
          "data-reward-id": reward.rewardId,
          "aria-label": `Redeem ${reward.name} for ${formatPoints(reward.pointsCost)} points`,
          disabled: busy,
          "aria-busy": busy ? "true" : null,
        },
        busy ? "Redeeming\u2026" : "Redeem",
      );
      button.addEventListener("click", () => onRedeem(reward));
      return h(
        "li",
        { "data-reward-id": reward.rewardId },
        h("span", { class: "name" }, reward.name),
        h("span", { class: "cost" }, `${formatPoints(reward.pointsCost)} pts`),
        button,
      );
    }),
  );
  return section(
    "rewards",
    "Rewards you can get now",
    affordable.length > 0 ? list : empty("Keep earning: no reward is within reach yet."),
    next
      ? h(
          "p",
          { class: "next-reward", "data-reward-id": next.rewardId },
          `Next: ${next.name} \u2014 ${formatPoints(next.pointsCost - Math.max(points, 0))} points to go`,
        )
      : null,
  );
}

function promotionsSection(promotions) {
  return section(
    "promotions",
    "Offers for you",
    promotions.length === 0
      ? empty("No offers right now.")
      : h(
          "ul",
          { class: "promotions" },
          promotions.map((promotion) =>
            h(
              "li",
              {},
              h("span", { class: "name" }, promotion.name),
              h("span", { class: "effect" }, promotion.effect ? promotion.effect.description : ""),
              promotion.endsAt
                ? h("span", { class: "muted" }, `until ${formatDate(promotion.endsAt)}`)
                : null,
            ),
          ),
        ),
  );
}

/** Badges earned, then the achievements still in progress with a bar each. */
function achievementsSection(badges, achievements) {
  if (!badges && !achievements) return null;
  const open = (achievements || []).filter((a) => !a.unlockedAt);
  return section(
    "achievements",
    "Badges",
    badges && badges.length > 0
      ? h(
          "ul",
          { class: "badges" },
          badges.map((badge) =>
            h(
              "li",
              { title: `Unlocked ${formatDate(badge.unlockedAt)}` },
              h("span", { class: "badge-icon", "aria-hidden": "true" }, "\u2605"),
              badge.badge,
            ),
          ),
        )
      : empty("No badges yet."),
    open.length > 0
      ? h(
          "ul",
          { class: "achievements" },
          open.map((a) =>
            h(
              "li",
              {},
              h("span", { class: "name" }, a.name),
              progressBar(a.name, a.progress, a.target, `${a.progress} of ${a.target}`),
              h(
                "span",
                { class: "count" },
                `${formatPoints(a.progress)} / ${formatPoints(a.target)}`,
              ),
            ),
          ),
        )
      : null,
  );
}

function ranksSection(ranks) {
  const orgWide = (ranks || []).filter((rank) => !rank.locationId);
  return section(
    "ranks",
    "Leaderboard",
    orgWide.length === 0
      ? empty("Make a purchase to join the leaderboard.")
      : h(
          "ul",
          { class: "ranks" },
          orgWide.map((rank) =>
            h(
              "li",
              {},
              h("strong", {}, `#${rank.rank}`),
              ` ${PERIOD_LABELS[rank.period] || rank.period} \u00b7 ${formatPoints(rank.points)} pts`,
            ),
          ),
        ),
  );
}

/** A purchase's points, line by line, as the event recorded them. */
function breakdownDetails(breakdown, promotionNames) {
  const rows = [
    ["Base points", formatPoints(breakdown.base)],
    ["With your tier", formatPoints(breakdown.tierPoints)],
  ];
  for (const promotion of breakdown.promotions) {
    rows.push([
      promotionNames.get(promotion.promotionId) || promotion.promotionId,
      formatDelta(promotion.points),
    ]);
  }
  if (breakdown.capCut > 0) rows.push(["Earn cap", formatDelta(-breakdown.capCut)]);
  rows.push(["Total", formatPoints(breakdown.total)]);
  return h(
    "details",
    { class: "breakdown" },
    h("summary", {}, `Why ${formatPoints(breakdown.total)} points?`),
    h(
      "dl",
      {},
      rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    ),
  );
}

function activitySection(history, program) {
  const promotionNames = new Map(
    ((program && program.promotions) || []).map((p) => [p.promotionId, p.name]),
  );
  const currency = program && program.currency;
  const entries = (history && history.nodes) || [];
  return section(
    "activity",
    "Recent activity",
    entries.length === 0
      ? empty("Nothing yet.")
      : h(
          "ol",
          { class: "activity" },
          entries.map((entry) =>
            h(
              "li",
              { "data-sequence": entry.sequence },
              h(
                "span",
                { class: "what" },
                EVENT_LABELS[entry.eventType] || entry.eventType,
                entry.amountMinor !== null && entry.amountMinor !== undefined
                  ? ` \u00b7 ${formatMoney(entry.amountMinor, currency)}`
                  : "",
                entry.tier ? ` \u00b7 ${entry.tier}` : "",
              ),
              h(
                "time",
                { class: "when", datetime: entry.occurredAt },
                formatDateTime(entry.occurredAt),
              ),
              entry.pointsDelta !== 0
                ? h(
                    "span",
                    { class: entry.pointsDelta > 0 ? "delta plus" : "delta minus" },
                    formatDelta(entry.pointsDelta),
                  )
                : null,
              entry.breakdown ? breakdownDetails(entry.breakdown, promotionNames) : null,
            ),
          ),
        ),
  );
}
