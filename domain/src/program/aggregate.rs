//! The program as a cqrs-es aggregate: a thin adapter over [`decide`] and [`Program::evolve`].

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

use super::commands::ProgramCommand;
use super::decide::decide;
use super::errors::ProgramError;
use super::events::ProgramEvent;
use super::state::Program;

impl Program {
    /// Decides `command` and applies the events it appends (see `Member::execute`).
    pub fn execute(&mut self, command: ProgramCommand) -> Result<Vec<ProgramEvent>, ProgramError> {
        let events = decide(self, command)?;
        for event in &events {
            self.evolve(event.clone());
        }
        Ok(events)
    }
}

impl Aggregate for Program {
    const TYPE: &'static str = "program";
    type Command = ProgramCommand;
    type Event = ProgramEvent;
    type Error = ProgramError;
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
