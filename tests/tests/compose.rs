//! `docker-compose.yml` and the `Dockerfile` agree with the binaries they run.
//!
//! There is no Docker engine where the tests run, so nothing is started: the compose file is
//! parsed, and every environment variable of every service is checked against the clap
//! configuration of that service's binary (the variable must be one of its flags' `env`
//! names, and its value must parse), as are ports, listen addresses, health checks, the image
//! versions and the Dockerfile targets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::{Args as _, CommandFactory as _};
use serde_yaml_ng::Value;

/// Variables read outside clap, by `common::telemetry`, with their accepted values.
const TELEMETRY_VARS: [&str; 2] = ["RUST_LOG", "LOG_FORMAT"];

/// The three services of the platform, their clap command, and the subcommand compose runs.
const APP_SERVICES: [&str; 3] = ["command-service", "projector", "query-service"];

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn compose() -> Value {
    serde_yaml_ng::from_str(&repo_file("docker-compose.yml")).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_mapping(), "docker-compose.yml has no service `{name}`");
    service
}

fn str_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment`, as a map (both compose spellings: mapping and `KEY=value` list).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                let key = str_of(k).expect("environment keys are strings");
                let value = str_of(v).unwrap_or_else(|| panic!("environment value of {key} is not a scalar"));
                (key, value)
            })
            .collect(),
        Value::Sequence(list) => list
            .iter()
            .map(|entry| {
                let entry = str_of(entry).expect("environment entries are strings");
                let (k, v) = entry.split_once('=').unwrap_or((&entry, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Null => BTreeMap::new(),
        other => panic!("environment is neither a mapping nor a list: {other:?}"),
    }
}

fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().filter_map(str_of).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The clap command of a service's main mode, and the argv prefix that selects it.
fn clap_command(service: &str) -> (clap::Command, Vec<String>) {
    match service {
        // `command-service serve` flattens `command_service::Config`.
        "command-service" => (
            command_service::Config::augment_args(clap::Command::new("command-service-serve")),
            vec!["command-service-serve".to_owned()],
        ),
        "projector" => (
            projector::cli::Cli::command(),
            vec!["projector".to_owned(), "run".to_owned()],
        ),
        "query-service" => (query_service::Config::command(), vec!["query-service".to_owned()]),
        other => panic!("unknown service {other}"),
    }
}

/// Every problem with `env` as the environment of `service`: unknown variables, values the
/// binary's flags refuse. Empty when the binary would accept it.
fn env_problems(service: &str, env: &BTreeMap<String, String>) -> Vec<String> {
    let (command, mut argv) = clap_command(service);
    let flags: BTreeMap<String, String> = command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some((env, arg.get_long()?.to_owned()))
        })
        .collect();
    let mut problems = Vec::new();
    for (name, value) in env {
        if let Some(long) = flags.get(name) {
            argv.push(format!("--{long}"));
            argv.push(value.clone());
        } else if name == "LOG_FORMAT" {
            if !["json", "text"].contains(&value.to_ascii_lowercase().as_str()) {
                problems.push(format!("{service}: LOG_FORMAT={value} is neither json nor text"));
            }
        } else if !TELEMETRY_VARS.contains(&name.as_str()) {
            problems.push(format!(
                "{service}: {name} is not a setting of the binary (known: {})",
                flags.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if let Err(error) = command.try_get_matches_from(&argv) {
        problems.push(format!("{service}: {argv:?} is refused: {error}"));
    }
    problems
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("no port in `{addr}`"))
}

/// Container ports of a service's `ports` entries (`[host_ip:]host:container`).
fn container_ports(service: &Value) -> Vec<u16> {
    string_list(&service["ports"])
        .iter()
        .map(|p| port_of(p.split('/').next().unwrap_or(p)))
        .collect()
}

/// Stages of the Dockerfile by name, each with its instructions (continuations joined).
fn dockerfile_stages() -> BTreeMap<String, Vec<String>> {
    let text = repo_file("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(line);
            instructions.push(std::mem::take(&mut current));
        }
    }
    let mut stages = BTreeMap::new();
    let mut name = String::new();
    for instruction in instructions {
        let words: Vec<&str> = instruction.split_whitespace().collect();
        if words.first().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            name = match words.as_slice() {
                [_, _, as_, stage] if as_.eq_ignore_ascii_case("AS") => (*stage).to_owned(),
                _ => String::new(),
            };
            stages.entry(name.clone()).or_insert_with(Vec::new);
        }
        stages.entry(name.clone()).or_default().push(instruction);
    }
    stages
}

fn instruction<'a>(stage: &'a [String], keyword: &str) -> Option<&'a str> {
    stage.iter().rev().find_map(|i| {
        let (head, rest) = i.split_once(' ')?;
        head.eq_ignore_ascii_case(keyword).then_some(rest.trim())
    })
}

#[test]
fn every_environment_variable_is_a_setting_its_binary_accepts() {
    let compose = compose();
    for name in APP_SERVICES {
        let env = environment(service(&compose, name));
        for required in ["DATABASE_URL", "NATS_URL", "LISTEN_ADDR"] {
            assert!(env.contains_key(required), "{name} does not set {required}");
        }
        let problems = env_problems(name, &env);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

#[test]
fn the_check_catches_unknown_variables_and_bad_values() {
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let misspelled = env_problems("projector", &env(&[("DATABSE_URL", "postgres://x")]));
    assert!(
        misspelled
            .iter()
            .any(|p| p.contains("DATABSE_URL is not a setting")),
        "{misspelled:?}"
    );
    let bad_value = env_problems("projector", &env(&[("PROJECTOR_BATCH_SIZE", "lots")]));
    assert!(
        bad_value.iter().any(|p| p.contains("is refused")),
        "{bad_value:?}"
    );
    let foreign = env_problems("query-service", &env(&[("RELAY_BATCH_SIZE", "10")]));
    assert!(
        !foreign.is_empty(),
        "the relay's setting was accepted by the query service"
    );
    assert!(env_problems("command-service", &env(&[("RELAY_BATCH_SIZE", "10")])).is_empty());
    assert!(!env_problems("command-service", &env(&[("LOG_FORMAT", "xml")])).is_empty());
}

#[test]
fn listen_addresses_ports_and_health_checks_agree() {
    let compose = compose();
    let stages = dockerfile_stages();
    let mut host_ports = BTreeSet::new();
    for name in APP_SERVICES {
        let service = service(&compose, name);
        let listen = environment(service)["LISTEN_ADDR"].clone();
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{name} must listen on all interfaces inside its container, not {listen}"
        );
        let port = port_of(&listen);
        assert_eq!(
            container_ports(service),
            vec![port],
            "{name}: ports vs LISTEN_ADDR"
        );
        for mapping in string_list(&service["ports"]) {
            assert!(
                host_ports.insert(mapping.clone()),
                "host port of {mapping} used twice"
            );
        }

        let health = string_list(&service["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains(&format!("127.0.0.1:{port}/readyz")),
            "{name}: health check `{health}` does not probe /readyz on {port}"
        );

        let target =
            str_of(&service["build"]["target"]).unwrap_or_else(|| panic!("{name} has no build target"));
        assert_eq!(target, name, "{name} builds the wrong Dockerfile target");
        let stage = stages
            .get(&target)
            .unwrap_or_else(|| panic!("the Dockerfile has no stage `{target}`"));
        assert_eq!(
            instruction(stage, "EXPOSE"),
            Some(port.to_string().as_str()),
            "{name}: EXPOSE"
        );
        assert_eq!(
            instruction(stage, "ENV").map(|e| e.contains(&format!("LISTEN_ADDR=0.0.0.0:{port}"))),
            Some(true),
            "{name}: the image's default LISTEN_ADDR"
        );
        assert!(
            instruction(stage, "HEALTHCHECK").is_some_and(|h| h.contains(&format!(":{port}/readyz"))),
            "{name}: the image's HEALTHCHECK"
        );
        assert_eq!(
            instruction(stage, "ENTRYPOINT"),
            Some(format!("[\"{name}\"]").as_str()),
            "{name}: ENTRYPOINT"
        );
        assert!(
            service.get("depends_on").is_some_and(|d| {
                ["postgres", "nats"]
                    .iter()
                    .all(|dep| str_of(&d[*dep]["condition"]).as_deref() == Some("service_healthy"))
            }),
            "{name} must wait for healthy postgres and nats"
        );
    }
}

#[test]
fn compose_runs_the_serving_mode_of_each_binary() {
    let compose = compose();
    let stages = dockerfile_stages();
    // The projector's subcommands are in its library: check the one compose runs exists.
    let projector_cmd = string_list(&service(&compose, "projector")["command"]);
    let mut argv = vec!["projector".to_owned()];
    argv.extend(projector_cmd);
    let cli = projector::cli::Cli::try_parse_from_argv(&argv);
    assert!(
        matches!(cli.command, None | Some(projector::cli::Command::Run)),
        "compose runs `{argv:?}`, not the consumer"
    );
    // command-service serves only with `serve` (its other subcommands exit).
    assert_eq!(
        string_list(&service(&compose, "command-service")["command"]),
        ["serve"]
    );
    assert_eq!(
        instruction(&stages["command-service"], "CMD"),
        Some("[\"serve\"]")
    );
    // The build stage compiles and copies all three binaries.
    let build = stages.get("build").expect("a `build` stage");
    let run = build
        .iter()
        .find(|i| i.contains("cargo build"))
        .expect("cargo build in the build stage");
    for name in APP_SERVICES {
        assert!(
            run.contains(&format!("-p {name}")),
            "the build stage does not build {name}"
        );
        assert!(
            run.contains(&format!("target/release/{name}")),
            "{name} is not copied out"
        );
    }
    assert!(run.contains("--locked"), "builds must use Cargo.lock");
}

#[test]
fn postgres_16_and_nats_with_jetstream_keep_their_data_on_volumes() {
    let compose = compose();
    let volumes = compose["volumes"].as_mapping().expect("top-level volumes");
    let named_volume_at = |service: &Value, path: &str| {
        string_list(&service["volumes"]).iter().any(|v| {
            v.split_once(':')
                .is_some_and(|(name, target)| target == path && volumes.contains_key(name))
        })
    };

    let postgres = service(&compose, "postgres");
    let image = str_of(&postgres["image"]).expect("postgres image");
    assert!(
        image == "postgres:16" || image.starts_with("postgres:16."),
        "Postgres must be 16, not {image}"
    );
    assert!(named_volume_at(postgres, "/var/lib/postgresql/data"));
    assert!(string_list(&postgres["healthcheck"]["test"])
        .join(" ")
        .contains("pg_isready"));

    let nats = service(&compose, "nats");
    let image = str_of(&nats["image"]).expect("nats image");
    let version = image
        .strip_prefix("nats:")
        .and_then(|tag| tag.split('-').next())
        .unwrap_or_else(|| panic!("nats image `{image}` has no version tag"));
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!(
        (major, minor) >= (2, 10),
        "NATS must be 2.10 or newer, not {image}"
    );
    let command = string_list(&nats["command"]);
    assert!(
        command.iter().any(|c| c == "--jetstream" || c == "-js"),
        "JetStream is not enabled: {command:?}"
    );
    let store = command
        .iter()
        .position(|c| c == "--store_dir" || c == "-sd")
        .and_then(|i| command.get(i + 1))
        .expect("a JetStream store directory");
    assert!(
        named_volume_at(nats, store),
        "the JetStream store {store} is not on a named volume"
    );
    assert!(!string_list(&nats["healthcheck"]["test"]).is_empty());

    // The services reach both by their compose names, with the credentials Postgres is given.
    let pg_env = environment(postgres);
    for name in APP_SERVICES {
        let env = environment(service(&compose, name));
        let db = url::Url::parse(&env["DATABASE_URL"]).expect("DATABASE_URL is a URL");
        assert_eq!(db.host_str(), Some("postgres"), "{name}: DATABASE_URL host");
        assert_eq!(db.username(), pg_env["POSTGRES_USER"], "{name}: database user");
        assert_eq!(
            db.password(),
            Some(pg_env["POSTGRES_PASSWORD"].as_str()),
            "{name}: password"
        );
        assert_eq!(
            db.path(),
            format!("/{}", pg_env["POSTGRES_DB"]),
            "{name}: database name"
        );
        let nats_url = url::Url::parse(&env["NATS_URL"]).expect("NATS_URL is a URL");
        assert_eq!(nats_url.host_str(), Some("nats"), "{name}: NATS_URL host");
        assert_eq!(nats_url.port(), Some(4222), "{name}: NATS_URL port");
    }
}

/// `Cli::try_parse_from` with the error shown on failure.
trait TryParseArgv: Sized {
    fn try_parse_from_argv(argv: &[String]) -> Self;
}

impl TryParseArgv for projector::cli::Cli {
    fn try_parse_from_argv(argv: &[String]) -> Self {
        <Self as clap::Parser>::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }
}
