//! The member as a cqrs-es aggregate: a thin adapter over [`decide`] and [`Member::evolve`].

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

use super::commands::{MemberCommand, Purchase};
use super::decide::{decide, quote};
use super::earn::Breakdown;
use super::errors::MemberError;
use super::events::MemberEvent;
use super::state::Member;

impl Member {
    /// Decides `command` and applies the events it appends: what the command service does in
    /// one append, for the seeder, the benches and the tests that build histories in memory.
    pub fn execute(&mut self, command: MemberCommand) -> Result<Vec<MemberEvent>, MemberError> {
        let events = decide(self, command)?;
        for event in &events {
            self.evolve(event.clone());
        }
        Ok(events)
    }

    /// The points `purchase` would earn now and why (SPEC §9 "Points quote"): the same checks
    /// and the same decision as recording it, with no event. A quote does not ask whether the
    /// transaction was already recorded.
    pub fn quote(&self, purchase: &Purchase) -> Result<Breakdown, MemberError> {
        quote(self, purchase)
    }
}

impl Aggregate for Member {
    const TYPE: &'static str = "member";
    type Command = MemberCommand;
    type Event = MemberEvent;
    type Error = MemberError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in decide(self, command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.evolve(event);
    }
}
