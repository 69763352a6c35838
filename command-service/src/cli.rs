//! The command line: serve (the default), the relay alone, or an administrative command.

use std::io::Write;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use common::keys::Role;
use uuid::Uuid;

use crate::config::{Config, DEFAULT_LISTEN};
use crate::relay::RelayConfig;

#[derive(Debug, Parser)]
#[command(
    name = "command-service",
    version,
    about = "Loyalty command API (POS terminals, admin tools) and the relay to JetStream"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API, and run the relay unless `--relay false` (what runs without a
    /// subcommand).
    Serve,
    /// Run only the relay from the event store to JetStream.
    Relay,
    /// Apply the database migrations that are not applied yet.
    Migrate,
    /// Manage API keys and the signing secrets of customer tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; the key is printed alone on the last line and cannot be shown again.
    Create {
        /// The org the key belongs to.
        #[arg(long)]
        org: String,
        /// pos, admin, storefront, analyst or publishable.
        #[arg(long)]
        role: Role,
    },
    /// List an org's keys (ids, roles, prefixes; never the keys).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key by its id.
    Revoke {
        #[arg(long)]
        key_id: Uuid,
    },
    /// Manage the signing secrets of an org's customer tokens (SPEC §10).
    SigningSecret {
        #[command(subcommand)]
        command: SecretCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a signing secret; it is printed alone on the last line and cannot be shown again.
    Create {
        #[arg(long)]
        org: String,
    },
    /// List an org's signing secrets (ids, fingerprints; never the secrets).
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a signing secret by its id: tokens it signed are refused at once.
    Revoke {
        #[arg(long)]
        secret_id: Uuid,
    },
}

impl Cli {
    /// Runs what the command line asks for.
    pub async fn execute(self) -> anyhow::Result<()> {
        self.execute_to(&mut std::io::stdout()).await
    }

    /// Runs what the command line asks for, writing what it prints to `out`.
    pub async fn execute_to(self, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
        let config = self.config;
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let listener = config.listen.bind(DEFAULT_LISTEN).await?;
                crate::run(config, listener, common::shutdown::signal()).await
            }
            Command::Relay => {
                let relay = RelayConfig {
                    database_url: config.db.database_url.clone(),
                    nats: config.nats.clone(),
                    args: config.relay.clone(),
                };
                crate::run_relay(relay, common::shutdown::signal()).await
            }
            Command::Migrate => {
                let pool = common::config::connect_db(&config.db).await?;
                schema::migrate(&pool).await.context("applying migrations")?;
                writeln!(out, "migrations applied")?;
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::Create { org, role },
            } => {
                let pool = common::config::connect_db(&config.db).await?;
                let key = common::keys::create_key(&pool, &org, role)
                    .await
                    .context("is the database migrated? (command-service migrate)")?;
                writeln!(
                    out,
                    "Created a {role} key for org {org}. It is shown only this once:"
                )?;
                writeln!(out, "{key}")?;
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::List { org },
            } => {
                let pool = common::config::connect_db(&config.db).await?;
                let keys = common::keys::list_keys(&pool, &org, None).await?;
                writeln!(
                    out,
                    "{:<36}  {:<11}  {:<8}  {:<25}  revoked",
                    "key_id", "role", "prefix", "created"
                )?;
                for key in keys {
                    writeln!(
                        out,
                        "{:<36}  {:<11}  {:<8}  {:<25}  {}",
                        key.key_id,
                        key.role,
                        key.key_prefix,
                        key.created_at.to_rfc3339(),
                        key.revoked_at
                            .map(|at| at.to_rfc3339())
                            .unwrap_or_else(|| "-".to_owned())
                    )?;
                }
                Ok(())
            }
            Command::Keys {
                command: KeysCommand::SigningSecret { command },
            } => secret_command(&config, command, out).await,
            Command::Keys {
                command: KeysCommand::Revoke { key_id },
            } => {
                let pool = common::config::connect_db(&config.db).await?;
                if common::keys::revoke(&pool, key_id).await? {
                    writeln!(out, "revoked key {key_id}")?;
                    Ok(())
                } else {
                    anyhow::bail!("no active key with id {key_id}")
                }
            }
        }
    }
}

async fn secret_command(
    config: &Config,
    command: SecretCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let pool = common::config::connect_db(&config.db).await?;
    match command {
        SecretCommand::Create { org } => {
            let created =
                common::signing_secrets::create(&pool, &config.secrets.pepper(), &org, Uuid::new_v4())
                    .await
                    .context("is the database migrated? (command-service migrate)")?;
            writeln!(
                out,
                "Created signing secret {} for org {org} (fingerprint {}). Sign customer tokens \
                 (HS256, aud = {org}) with it on your server; it is shown only this once:",
                created.info.secret_id, created.info.fingerprint
            )?;
            writeln!(out, "{}", created.secret)?;
        }
        SecretCommand::List { org } => {
            let secrets = common::signing_secrets::list(&pool, &org).await?;
            writeln!(
                out,
                "{:<36}  {:<12}  {:<25}  revoked",
                "secret_id", "fingerprint", "created"
            )?;
            for secret in secrets {
                writeln!(
                    out,
                    "{:<36}  {:<12}  {:<25}  {}",
                    secret.secret_id,
                    secret.fingerprint,
                    secret.created_at.to_rfc3339(),
                    secret
                        .revoked_at
                        .map(|at| at.to_rfc3339())
                        .unwrap_or_else(|| "-".to_owned())
                )?;
            }
        }
        SecretCommand::Revoke { secret_id } => {
            match common::signing_secrets::revoke(&pool, None, secret_id).await? {
                Some(secret) => writeln!(out, "revoked signing secret {secret_id} of org {}", secret.org_id)?,
                None => anyhow::bail!("no signing secret with id {secret_id}"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_may_follow_the_subcommand() {
        let cli = Cli::parse_from([
            "command-service",
            "serve",
            "--relay",
            "false",
            "--listen",
            "127.0.0.1:0",
            "--nats-stream",
            "S",
        ]);
        assert!(matches!(cli.command, Some(Command::Serve)));
        assert!(!cli.config.relay_enabled);
        assert_eq!(cli.config.listen.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(cli.config.nats.nats_stream, "S");
    }

    #[test]
    fn keys_create_takes_org_and_role() {
        let cli = Cli::parse_from([
            "command-service",
            "keys",
            "create",
            "--org",
            "acme",
            "--role",
            "pos",
        ]);
        match cli.command {
            Some(Command::Keys {
                command: KeysCommand::Create { org, role },
            }) => {
                assert_eq!(org, "acme");
                assert_eq!(role, Role::Pos);
            }
            other => panic!("parsed {other:?}"),
        }
        assert!(Cli::try_parse_from([
            "command-service",
            "keys",
            "create",
            "--org",
            "acme",
            "--role",
            "root"
        ])
        .is_err());
    }

    #[test]
    fn signing_secrets_have_their_own_subcommands() {
        let cli = Cli::parse_from([
            "command-service",
            "keys",
            "signing-secret",
            "create",
            "--org",
            "acme",
        ]);
        assert!(matches!(
            cli.command,
            Some(Command::Keys {
                command: KeysCommand::SigningSecret {
                    command: SecretCommand::Create { ref org }
                }
            }) if org == "acme"
        ));
        let cli = Cli::parse_from([
            "command-service",
            "keys",
            "create",
            "--org",
            "acme",
            "--role",
            "publishable",
        ]);
        assert!(matches!(
            cli.command,
            Some(Command::Keys {
                command: KeysCommand::Create {
                    role: Role::Publishable,
                    ..
                }
            })
        ));
    }
}
