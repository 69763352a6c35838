//! How each member event changes the member's state.

use super::events::MemberEvent;
use super::lots::{credited_lot, LotKey};
use super::state::{Enrolment, Grace, Member, PurchaseRecord, RefundRecord, TierState};

impl Member {
    /// Folds `event` into the state. Every event is a fact: nothing here can refuse it.
    pub fn evolve(&mut self, event: MemberEvent) {
        self.points.apply(&event);
        // Which lot a credit goes to is the lots' own rule, also used to undo an event.
        let lot = credited_lot(&event);
        match event {
            MemberEvent::MemberEnrolled {
                org_id,
                member_id,
                external_id,
                display_name,
                enrolled_at,
                tier,
                multiplier_bps,
                ..
            } => {
                self.enrolment = Some(Enrolment {
                    org_id,
                    member_id,
                    external_id,
                    display_name,
                    enrolled_at,
                });
                self.tier = TierState {
                    name: tier,
                    multiplier_bps,
                    grace: None,
                    last_reevaluation: None,
                };
            }
            MemberEvent::PurchaseRecorded {
                transaction_id,
                location_id,
                amount_minor,
                currency,
                occurred_at,
                points_earned,
                items,
                breakdown,
                ..
            } => {
                self.credit(points_earned, lot);
                self.earn_history.record(occurred_at, &breakdown);
                self.qualifying.add(occurred_at, points_earned);
                let replaced = self.purchases.insert(
                    transaction_id,
                    PurchaseRecord {
                        location_id,
                        amount_minor,
                        currency,
                        occurred_at,
                        points_earned,
                        refunded_minor: 0,
                        clawed_back: 0,
                        items,
                    },
                );
                if let Some(old) = replaced {
                    // Never decided (a transaction id is recorded once), but the index must
                    // stay the purchases' own sum whatever the log holds.
                    self.qualifying
                        .add(old.occurred_at, old.clawed_back - old.points_earned);
                }
            }
            MemberEvent::StampCollected {
                card_id, day, stamps, ..
            } => {
                let card = self.stamp_cards.entry(card_id).or_default();
                card.stamps = stamps;
                card.stamped_days.insert(day);
            }
            MemberEvent::StampCardCompleted {
                card_id,
                cards_completed,
                ..
            } => {
                let card = self.stamp_cards.entry(card_id).or_default();
                card.stamps = 0;
                card.completed = cards_completed;
            }
            MemberEvent::TierUpgraded {
                to, multiplier_bps, ..
            } => {
                self.tier.name = to;
                self.tier.multiplier_bps = multiplier_bps;
                self.tier.grace = None;
            }
            MemberEvent::TierDowngraded {
                to,
                multiplier_bps,
                as_of,
                ..
            } => {
                self.tier.name = to;
                self.tier.multiplier_bps = multiplier_bps;
                self.tier.grace = None;
                self.tier.last_reevaluation = Some(as_of);
            }
            MemberEvent::TierGracePeriodStarted {
                as_of,
                downgrade_after,
                ..
            } => {
                self.tier.grace = Some(Grace {
                    started_at: as_of,
                    downgrade_after,
                });
                self.tier.last_reevaluation = Some(as_of);
            }
            MemberEvent::TierGracePeriodCleared { .. } => {
                self.tier.grace = None;
            }
            MemberEvent::PurchaseRefunded {
                refund_id,
                transaction_id,
                amount_minor,
                refunded_total_minor,
                points_clawed_back,
                ..
            } => {
                if let Some(purchase) = self.purchases.get_mut(&transaction_id) {
                    purchase.refunded_minor = refunded_total_minor;
                    purchase.clawed_back += points_clawed_back;
                    self.qualifying.add(purchase.occurred_at, -points_clawed_back);
                }
                self.refunds.insert(
                    refund_id,
                    RefundRecord {
                        transaction_id,
                        amount_minor,
                    },
                );
                self.debit(points_clawed_back);
            }
            MemberEvent::RewardRedeemed {
                redemption_id,
                reward_id,
                points_cost,
                ..
            } => {
                self.redemptions.insert(redemption_id, reward_id);
                self.debit(points_cost);
            }
            MemberEvent::PointsAdjusted {
                adjustment_id,
                delta,
                reason,
                ..
            } => {
                self.adjustments.insert(adjustment_id, (delta, reason));
                if delta > 0 {
                    self.credit(delta, lot);
                } else {
                    self.debit(-delta);
                }
            }
            MemberEvent::PointsExpired { as_of, .. } => {
                self.lots.expire(as_of);
            }
            MemberEvent::AchievementProgressed { progress, .. } => {
                for moved in progress {
                    let state = self.achievements.entry(moved.achievement_id).or_default();
                    state.progress = moved.progress;
                    state.target = moved.target;
                }
            }
            MemberEvent::AchievementUnlocked {
                achievement_id,
                reward_points,
                occurred_at,
                ..
            } => {
                self.credit(reward_points, lot);
                self.achievements.entry(achievement_id).or_default().unlocked_at = Some(occurred_at);
            }
        }
    }

    /// Puts credited points (already counted in the balance) into `lot`.
    fn credit(&mut self, points: i64, lot: Option<LotKey>) {
        // While the balance is negative every lot is empty: earned points first repay the debt.
        let into_lot = points.min(self.points.balance.max(0));
        if let Some(lot) = lot {
            self.lots.credit(lot, into_lot);
        }
    }

    /// Takes debited points (already counted in the balance) from the lots.
    fn debit(&mut self, points: i64) {
        // Beyond the lots is a negative balance, which the counters already hold.
        self.lots.debit(points);
    }
}
