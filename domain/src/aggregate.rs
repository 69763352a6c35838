//! What makes an aggregate of this model: a pure `decide(&state, command)` and a fold `evolve`,
//! adapted once to cqrs-es here so both aggregates share the same few lines.

/// Implements, for `$state`:
/// - `execute(&mut self, command)`: decides the command and applies the events it appends,
///   what the command service does in one append, for the seeder, the benches and the tests
///   that build histories in memory;
/// - cqrs-es's `Aggregate`, a thin adapter whose `handle` writes the decided events to the sink
///   and whose `apply` is `evolve`.
macro_rules! decided_aggregate {
    ($state:ty, $type:literal, $command:ty, $event:ty, $error:ty, $decide:path) => {
        impl $state {
            /// Decides `command` and applies the events it appends.
            pub fn execute(&mut self, command: $command) -> Result<Vec<$event>, $error> {
                let events = $decide(self, command)?;
                for event in &events {
                    self.evolve(event.clone());
                }
                Ok(events)
            }
        }

        impl cqrs_es::Aggregate for $state {
            const TYPE: &'static str = $type;
            type Command = $command;
            type Event = $event;
            type Error = $error;
            type Services = ();

            async fn handle(
                &mut self,
                command: Self::Command,
                _service: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                for event in $decide(self, command)? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut self, event: Self::Event) {
                self.evolve(event);
            }
        }
    };
}

pub(crate) use decided_aggregate;
