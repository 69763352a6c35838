//! The program's rules: `decide(program, command)` is pure and synchronous.

use super::commands::{Configuration, NewLocation, ProgramCommand};
use super::errors::ProgramError;
use super::events::ProgramEvent;
use super::state::Program;
use crate::ids::is_slug;

/// The events `command` appends to the program's history, or why it is refused.
pub fn decide(program: &Program, command: ProgramCommand) -> Result<Vec<ProgramEvent>, ProgramError> {
    match command {
        ProgramCommand::Configure(Configuration { org_id, config, at }) => {
            check_org(program, &org_id)?;
            config.validate()?;
            // Re-sending the program in force is not a change: no new version.
            if program.config.as_ref() == Some(&config) {
                return Ok(Vec::new());
            }
            Ok(vec![ProgramEvent::ProgramConfigured {
                org_id,
                version: program.version + 1,
                config,
                configured_at: at,
            }])
        }
        ProgramCommand::RegisterLocation(NewLocation {
            org_id,
            location_id,
            name,
            at,
        }) => {
            check_org(program, &org_id)?;
            if !is_slug(&location_id) {
                return Err(ProgramError::InvalidLocationId(location_id));
            }
            let name = name.trim().to_owned();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(ProgramError::InvalidLocationName);
            }
            match program.locations.get(&location_id) {
                Some(existing) if *existing == name => return Ok(Vec::new()),
                Some(_) => return Err(ProgramError::LocationAlreadyRegistered(location_id)),
                None => {}
            }
            Ok(vec![ProgramEvent::LocationRegistered {
                org_id,
                location_id,
                name,
                registered_at: at,
            }])
        }
    }
}

fn check_org(program: &Program, org_id: &str) -> Result<(), ProgramError> {
    if !is_slug(org_id) {
        return Err(ProgramError::InvalidOrgId(org_id.to_owned()));
    }
    match &program.org_id {
        Some(expected) if expected != org_id => Err(ProgramError::WrongOrg {
            expected: expected.clone(),
            got: org_id.to_owned(),
        }),
        _ => Ok(()),
    }
}
