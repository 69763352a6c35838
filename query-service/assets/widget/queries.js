// The GraphQL documents the widget sends (names fixed by SPEC §8, §10 and §11).

const MEMBER_FIELDS = `
    memberId
    displayName
    balance { points nextExpiry { points date } }
    tier { name multiplierBps qualifyingPoints nextTier pointsToNext pointsToKeep keepBy inGrace }
    stampCards { cardId name stamps stampsRequired cardsCompleted }
    activePromotions { promotionId name endsAt effect { description } }
    leaderboardRanks { period periodKey locationId rank points }
    badges { achievementId badge unlockedAt }
    achievements { achievementId name progress target unlockedAt }
    history(first: 8) {
      nodes {
        sequence eventType occurredAt pointsDelta amountMinor rewardId tier
        breakdown { base tierPoints promotions { promotionId points } capCut total }
      }
    }`;

const PROGRAM_FIELDS = `
    currency
    tiers { name thresholdPoints multiplierBps }
    rewards { rewardId name pointsCost active }
    stampCards { cardId name stampsRequired }
    promotions { promotionId name }`;

/** The token's own member (`me`) and the org's program. */
const WIDGET_QUERY = `query LoyaltyWidget($org: ID!) {
  program(orgId: $org) { ${PROGRAM_FIELDS} }
  member: me(orgId: $org) { ${MEMBER_FIELDS} }
}`;

const LIVE_SUBSCRIPTION = `subscription LoyaltyWidgetLive($org: ID!, $id: ID!) {
  memberUpdated(orgId: $org, memberId: $id, includeCurrent: true) {
    eventType sequence points pointsDelta tier qualifyingPoints
  }
}`;

const REDEEM_MUTATION = `mutation LoyaltyWidgetRedeem($org: ID!, $rewardId: ID!, $redemptionId: ID!) {
  redeemReward(orgId: $org, rewardId: $rewardId, redemptionId: $redemptionId) {
    rewardId pointsSpent balance
  }
}`;
