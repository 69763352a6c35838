// The GraphQL documents the widget sends (names fixed by SPEC §8 and §11).

const WIDGET_QUERY = `query LoyaltyWidget($org: ID!, $id: ID, $ext: String) {
  program(orgId: $org) {
    currency
    tiers { name thresholdPoints multiplierBps }
    rewards { rewardId name pointsCost active }
    stampCards { cardId name stampsRequired }
    promotions { promotionId name }
  }
  member(orgId: $org, memberId: $id, externalId: $ext) {
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
    }
  }
}`;

const LIVE_SUBSCRIPTION = `subscription LoyaltyWidgetLive($org: ID!, $id: ID!) {
  memberUpdated(orgId: $org, memberId: $id, includeCurrent: true) {
    eventType sequence points pointsDelta tier qualifyingPoints
  }
}`;

const REDEEM_MUTATION = `mutation LoyaltyWidgetRedeem($org: ID!, $rewardId: String!, $key: String!) {
  redeemReward(orgId: $org, rewardId: $rewardId, idempotencyKey: $key) { balance sequence }
}`;
