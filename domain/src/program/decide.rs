//! The program's rules: `decide(program, command)` is pure and synchronous.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::commands::{Configuration, NewLocation, ProgramCommand, PromotionEdit, PromotionEnd};
use super::config::ProgramConfig;
use super::errors::ProgramError;
use super::events::ProgramEvent;
use super::promotion::Promotion;
use super::state::Program;
use crate::ids::is_slug;

/// The events `command` appends to the program's history, or why it is refused.
pub fn decide(program: &Program, command: ProgramCommand) -> Result<Vec<ProgramEvent>, ProgramError> {
    match command {
        ProgramCommand::Configure(Configuration { org_id, config, at }) => {
            check_org(program, &org_id)?;
            reconfigure(program, org_id, config, at)
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
        // Changes of one promotion are decided here, against the program in force, so that
        // two admins editing different promotions at once never lose one of the edits.
        ProgramCommand::AddPromotion(PromotionEdit { promotion, at }) => {
            let mut config = in_force(program)?.clone();
            if config.promotion(&promotion.promotion_id).is_some() {
                return Err(ProgramError::PromotionExists(promotion.promotion_id));
            }
            config.promotions.push(promotion);
            reconfigure(program, org_id(program)?, config, at)
        }
        ProgramCommand::ChangePromotion(PromotionEdit { promotion, at }) => {
            let mut config = in_force(program)?.clone();
            let id = promotion.promotion_id.clone();
            *promotion_mut(&mut config, &id)? = promotion;
            reconfigure(program, org_id(program)?, config, at)
        }
        ProgramCommand::EndPromotion(PromotionEnd {
            promotion_id,
            ends_at,
            at,
        }) => {
            let mut config = in_force(program)?.clone();
            let promotion = promotion_mut(&mut config, &promotion_id)?;
            // A promotion that has not started yet ends before it ever runs.
            let end = ends_at.max(promotion.starts_at);
            if promotion.ends_at.is_some_and(|ends_at| ends_at <= end) {
                return Ok(Vec::new());
            }
            promotion.ends_at = Some(end);
            reconfigure(program, org_id(program)?, config, at)
        }
    }
}

/// The org's registered locations, which promotions may name.
fn registered(program: &Program) -> BTreeSet<String> {
    program.locations.keys().cloned().collect()
}

fn in_force(program: &Program) -> Result<&ProgramConfig, ProgramError> {
    program.config.as_deref().ok_or(ProgramError::NotConfigured)
}

fn promotion_mut<'c>(
    config: &'c mut ProgramConfig,
    promotion_id: &str,
) -> Result<&'c mut Promotion, ProgramError> {
    config
        .promotions
        .iter_mut()
        .find(|p| p.promotion_id == promotion_id)
        .ok_or_else(|| ProgramError::PromotionNotFound(promotion_id.to_owned()))
}

/// The org of a program that was configured.
fn org_id(program: &Program) -> Result<String, ProgramError> {
    program.org_id.clone().ok_or(ProgramError::NotConfigured)
}

/// The next version with `config`, validated; nothing when it is the program in force
/// (re-sending the program in force is not a change).
fn reconfigure(
    program: &Program,
    org_id: String,
    config: ProgramConfig,
    at: DateTime<Utc>,
) -> Result<Vec<ProgramEvent>, ProgramError> {
    config.validate(&registered(program))?;
    if program.config.as_deref() == Some(&config) {
        return Ok(Vec::new());
    }
    Ok(vec![ProgramEvent::ProgramConfigured {
        org_id,
        version: program.version + 1,
        config,
        configured_at: at,
    }])
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
