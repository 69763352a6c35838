//! The program as a cqrs-es aggregate: a thin adapter over [`decide`] and [`Program::evolve`].

use super::commands::ProgramCommand;
use super::decide::decide;
use super::errors::ProgramError;
use super::events::ProgramEvent;
use super::state::Program;
use crate::aggregate::decided_aggregate;

decided_aggregate!(
    Program,
    "program",
    ProgramCommand,
    ProgramEvent,
    ProgramError,
    decide
);
