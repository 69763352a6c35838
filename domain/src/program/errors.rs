//! Why a program command is refused, and how each refusal is classified for API answers.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    #[error("{field}: {message}")]
    InvalidConfig { field: String, message: String },
    #[error("currency: unknown ISO-4217 currency code '{0}'")]
    UnknownCurrency(String),
    #[error("org_id: '{0}' is not a valid org id ([a-z0-9][a-z0-9-]{{0,62}})")]
    InvalidOrgId(String),
    #[error("location_id: '{0}' is not a valid location id ([a-z0-9][a-z0-9-]{{0,62}})")]
    InvalidLocationId(String),
    #[error("name: must be 1 to 200 characters")]
    InvalidLocationName,
    #[error("location_id: location '{0}' is already registered")]
    LocationAlreadyRegistered(String),
    #[error("org_id: this program belongs to org '{expected}', not '{got}'")]
    WrongOrg { expected: String, got: String },
    #[error("org_id: the org has no program yet; configure it first")]
    NotConfigured,
    #[error("promotion_id: no promotion '{0}' in the program")]
    PromotionNotFound(String),
    #[error("promotion_id: promotion '{0}' already exists; change it instead")]
    PromotionExists(String),
}

impl ProgramError {
    /// A stable machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            ProgramError::InvalidConfig { .. } => "invalid_program",
            ProgramError::UnknownCurrency(_) => "unknown_currency",
            ProgramError::InvalidOrgId(_) => "invalid_org_id",
            ProgramError::InvalidLocationId(_) => "invalid_location_id",
            ProgramError::InvalidLocationName => "invalid_location_name",
            ProgramError::LocationAlreadyRegistered(_) => "location_exists",
            ProgramError::WrongOrg { .. } => "wrong_org",
            ProgramError::NotConfigured => "program_not_configured",
            ProgramError::PromotionNotFound(_) => "promotion_not_found",
            ProgramError::PromotionExists(_) => "promotion_exists",
        }
    }

    /// The request field the error is about.
    pub fn field(&self) -> Option<String> {
        match self {
            ProgramError::InvalidConfig { field, .. } => Some(field.clone()),
            ProgramError::NotConfigured => Some("org_id".into()),
            ProgramError::PromotionNotFound(_) | ProgramError::PromotionExists(_) => {
                Some("promotion_id".into())
            }
            ProgramError::UnknownCurrency(_) => Some("currency".into()),
            ProgramError::InvalidOrgId(_) | ProgramError::WrongOrg { .. } => Some("org_id".into()),
            ProgramError::InvalidLocationId(_) | ProgramError::LocationAlreadyRegistered(_) => {
                Some("location_id".into())
            }
            ProgramError::InvalidLocationName => Some("name".into()),
        }
    }
}
