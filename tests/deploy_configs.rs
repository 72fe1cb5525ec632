//! Checks the deployment files that cannot be run here (there is no Docker
//! engine on this machine): the collector config, the compose file, the
//! Prometheus config and the Grafana provisioning and dashboard.
//!
//! The external validators (`promtool`, `dclint`) are installed by
//! `scripts/test`; a missing one fails its test with a message saying so, it
//! never skips.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Yaml {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

/// The keys of a YAML mapping (empty when absent).
fn keys(value: &Yaml) -> BTreeSet<String> {
    value
        .as_mapping()
        .map(|m| {
            m.keys()
                .map(|k| k.as_str().expect("string key").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn strings(value: &Yaml) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|v| v.as_str().expect("string item").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `otlp/tempo` → `otlp`: a component's type, without its name.
fn component_type(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// Runs an external validator; a missing tool is a failure naming the tool
/// and how `scripts/test` installs it.
fn run_tool(program: &str, args: &[&str], install_hint: &str) {
    let output = match Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{program}` is not installed: {install_hint}; `scripts/test` installs it before running the tests"
        ),
        Err(e) => panic!("running `{program}`: {e}"),
    };
    assert!(
        output.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---- (a) otel-collector.yaml --------------------------------------------

#[test]
fn collector_pipelines_reference_defined_components() {
    let config = yaml("otel-collector.yaml");
    let receivers = keys(&config["receivers"]);
    let processors = keys(&config["processors"]);
    let exporters = keys(&config["exporters"]);
    let connectors = keys(&config["connectors"]);
    let extensions = keys(&config["extensions"]);
    let service = &config["service"];

    let enabled_extensions: BTreeSet<String> =
        strings(&service["extensions"]).into_iter().collect();
    assert_eq!(
        enabled_extensions, extensions,
        "service.extensions must list exactly the defined extensions"
    );
    assert!(
        extensions
            .iter()
            .any(|e| component_type(e) == "health_check"),
        "the health_check extension is expected"
    );

    let pipelines = service["pipelines"]
        .as_mapping()
        .expect("service.pipelines is a mapping");
    assert!(!pipelines.is_empty(), "no pipelines");
    let mut used = BTreeSet::new();
    for (name, pipeline) in pipelines {
        let name = name.as_str().expect("pipeline name");
        assert!(
            ["traces", "metrics", "logs"].contains(&component_type(name)),
            "pipeline {name}: unknown signal"
        );
        let p_receivers = strings(&pipeline["receivers"]);
        let p_processors = strings(&pipeline["processors"]);
        let p_exporters = strings(&pipeline["exporters"]);
        assert!(!p_receivers.is_empty(), "pipeline {name}: no receivers");
        assert!(!p_exporters.is_empty(), "pipeline {name}: no exporters");
        for r in &p_receivers {
            assert!(
                receivers.contains(r) || connectors.contains(r),
                "pipeline {name}: receiver {r} is not defined"
            );
        }
        for p in &p_processors {
            assert!(
                processors.contains(p),
                "pipeline {name}: processor {p} is not defined"
            );
        }
        for e in &p_exporters {
            assert!(
                exporters.contains(e) || connectors.contains(e),
                "pipeline {name}: exporter {e} is not defined"
            );
        }
        assert_eq!(
            p_processors.first().map(|p| component_type(p)),
            Some("memory_limiter"),
            "pipeline {name}: memory_limiter must come first"
        );
        assert!(
            p_processors.iter().any(|p| component_type(p) == "batch"),
            "pipeline {name}: no batch processor"
        );
        used.extend(p_receivers);
        used.extend(p_processors);
        used.extend(p_exporters);
    }
    for defined in receivers.iter().chain(&processors).chain(&exporters) {
        assert!(
            used.contains(defined),
            "{defined} is defined but no pipeline uses it"
        );
    }

    // What the compose stack relies on.
    let otlp = &config["receivers"]["otlp"]["protocols"];
    assert_eq!(otlp["grpc"]["endpoint"].as_str(), Some("0.0.0.0:4317"));
    assert_eq!(otlp["http"]["endpoint"].as_str(), Some("0.0.0.0:4318"));
    let traces = strings(&service["pipelines"]["traces"]["exporters"]);
    let tempo = traces
        .iter()
        .find(|e| component_type(e) == "otlp")
        .expect("traces pipeline exports over OTLP (to Tempo)");
    assert_eq!(
        config["exporters"][tempo.as_str()]["endpoint"].as_str(),
        Some("tempo:4317")
    );
    assert!(
        strings(&service["pipelines"]["metrics"]["exporters"]).contains(&"prometheus".to_owned())
    );
    assert_eq!(
        config["exporters"]["prometheus"]["endpoint"].as_str(),
        Some("0.0.0.0:8889")
    );
    let reader = &service["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"];
    assert_eq!(
        reader["port"].as_u64(),
        Some(8888),
        "collector's own metrics on :8888"
    );
    assert_eq!(reader["host"].as_str(), Some("0.0.0.0"));
}

// ---- (b) Prometheus ------------------------------------------------------

#[test]
fn prometheus_config_passes_promtool() {
    run_tool(
        "promtool",
        &["check", "config", "deploy/prometheus/prometheus.yml"],
        "it comes with the Debian package `prometheus`",
    );
    let config = yaml("deploy/prometheus/prometheus.yml");
    let targets: BTreeSet<String> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|sc| strings(&sc["targets"]))
        .collect();
    for wanted in [
        "mail-laser:8080",
        "otel-collector:8889",
        "otel-collector:8888",
    ] {
        assert!(
            targets.contains(wanted),
            "Prometheus does not scrape {wanted}"
        );
    }
}

// ---- (c) + (e) docker-compose.yml ---------------------------------------

#[test]
fn compose_file_passes_dclint() {
    let dclint = root().join("node_modules/.bin/dclint");
    assert!(
        dclint.exists(),
        "dclint is not installed in {}: `scripts/test` installs it with `npm install --no-save dclint@3.1.0`",
        dclint.display()
    );
    run_tool(
        "npx",
        &["--no-install", "dclint", "docker-compose.yml", "-q"],
        "it comes with Node.js (Debian packages `nodejs` and `npm`)",
    );
}

#[test]
fn compose_images_are_pinned_and_dependencies_exist() {
    let compose = yaml("docker-compose.yml");
    assert!(
        compose.get("version").is_none(),
        "compose-spec files have no `version:` key"
    );
    let services = compose["services"].as_mapping().expect("services");
    let names = keys(&compose["services"]);
    for want in [
        "mail-laser",
        "webhook",
        "otel-collector",
        "tempo",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(want), "service {want} is missing");
    }
    for (name, service) in services {
        let name = name.as_str().expect("service name");
        match service["image"].as_str() {
            Some(image) => {
                let last = image.rsplit('/').next().unwrap_or(image);
                let (_, tag) = last
                    .split_once(':')
                    .unwrap_or_else(|| panic!("service {name}: image {image} has no tag"));
                assert!(
                    !tag.is_empty() && tag != "latest",
                    "service {name}: image {image} is not pinned"
                );
            }
            None => assert!(
                service.get("build").is_some(),
                "service {name}: neither image nor build"
            ),
        }
        let depends_on: Vec<String> = match &service["depends_on"] {
            Yaml::Sequence(_) => strings(&service["depends_on"]),
            deps @ Yaml::Mapping(_) => keys(deps).into_iter().collect(),
            _ => Vec::new(),
        };
        for dep in depends_on {
            assert!(
                names.contains(&dep),
                "service {name} depends on {dep}, which is not a service"
            );
        }
        // Files and folders mounted from the repository exist.
        for volume in strings(&service["volumes"]) {
            if let Some(rel) = volume.strip_prefix("./") {
                let source = rel.split(':').next().unwrap_or(rel);
                assert!(
                    root().join(source).exists(),
                    "service {name} mounts ./{source}, which does not exist"
                );
            }
        }
    }
    let mail_laser = &compose["services"]["mail-laser"]["environment"];
    assert_eq!(
        mail_laser["OTEL_METRICS_EXPORTER"].as_str(),
        Some("none"),
        "Prometheus scrapes /metrics; OTLP metric export would count twice"
    );
    assert!(
        mail_laser["OTEL_EXPORTER_OTLP_ENDPOINT"]
            .as_str()
            .is_some_and(|e| e.contains("otel-collector")),
        "traces go to the collector"
    );

    // The Dockerfile's base images are pinned as well.
    let dockerfile = read("Dockerfile");
    for line in dockerfile.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            let image = from.split_whitespace().next().unwrap_or_default();
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "Dockerfile: base image {image} is not pinned"
            );
        }
    }
}

// ---- (d) Grafana -----------------------------------------------------------

/// The metric families of MailLaser's `/metrics`; dashboard expressions may
/// use nothing else (histograms through `_bucket`, `_sum` and `_count`).
const COUNTERS_AND_GAUGES: &[&str] = &[
    "maillaser_sessions_active",
    "maillaser_sessions_total",
    "maillaser_smtp_commands_total",
    "maillaser_messages_total",
    "maillaser_webhook_retries_total",
    "maillaser_circuit_breaker_state",
    "maillaser_circuit_breaker_transitions_total",
    "maillaser_connections_refused_total",
    "maillaser_spool_depth",
    "maillaser_spool_dead_letters_total",
];
const HISTOGRAMS: &[&str] = &[
    "maillaser_message_size_bytes",
    "maillaser_webhook_request_duration_seconds",
];
const TEMPLATE_VARIABLES: &[&str] = &["$__rate_interval", "$__interval", "$__range"];

fn known_metric(name: &str) -> bool {
    COUNTERS_AND_GAUGES.contains(&name)
        || HISTOGRAMS.iter().any(|h| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name == format!("{h}{suffix}"))
        })
}

fn provisioned_datasources() -> BTreeSet<(String, String)> {
    let config = yaml("deploy/grafana/provisioning/datasources/datasources.yaml");
    config["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .map(|ds| {
            (
                ds["uid"].as_str().expect("datasource uid").to_owned(),
                ds["type"].as_str().expect("datasource type").to_owned(),
            )
        })
        .collect()
}

fn all_panels(panels: &[Json]) -> Vec<&Json> {
    let mut out = Vec::new();
    for panel in panels {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(all_panels(nested));
        }
    }
    out
}

fn check_datasource(where_: &str, ds: &Json, provisioned: &BTreeSet<(String, String)>) -> String {
    let uid = ds["uid"]
        .as_str()
        .unwrap_or_else(|| panic!("{where_}: no datasource uid"));
    let (_, kind) = provisioned
        .iter()
        .find(|(u, _)| u == uid)
        .unwrap_or_else(|| panic!("{where_}: datasource uid {uid} is not provisioned"));
    if let Some(declared) = ds["type"].as_str() {
        assert_eq!(
            declared, kind,
            "{where_}: datasource {uid} has another type"
        );
    }
    kind.clone()
}

#[test]
fn dashboard_panels_use_provisioned_datasources_and_known_metrics() {
    let provisioned = provisioned_datasources();
    let uids: BTreeSet<&str> = provisioned.iter().map(|(u, _)| u.as_str()).collect();
    assert!(uids.contains("prometheus") && uids.contains("tempo"));
    let ds_config = yaml("deploy/grafana/provisioning/datasources/datasources.yaml");
    let defaults: Vec<&str> = ds_config["datasources"]
        .as_sequence()
        .expect("datasources")
        .iter()
        .filter(|ds| ds["isDefault"].as_bool() == Some(true))
        .map(|ds| ds["uid"].as_str().expect("uid"))
        .collect();
    assert_eq!(defaults, ["prometheus"], "Prometheus is the one default");

    let provider = yaml("deploy/grafana/provisioning/dashboards/dashboards.yaml");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );

    let text = read("deploy/grafana/dashboards/maillaser.json");
    let dashboard: Json = serde_json::from_str(&text).expect("dashboard is valid JSON");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let panels = all_panels(dashboard["panels"].as_array().expect("panels"));
    let mut ids = BTreeSet::new();
    let mut prometheus_exprs = 0;
    let mut tempo_queries = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        if panel["type"] == "row" {
            continue;
        }
        let panel_kind = check_datasource(title, &panel["datasource"], &provisioned);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no queries");
        for target in targets {
            let kind = if target.get("datasource").is_some() {
                check_datasource(title, &target["datasource"], &provisioned)
            } else {
                panel_kind.clone()
            };
            match kind.as_str() {
                "prometheus" => {
                    let expr = target["expr"].as_str().unwrap_or_default();
                    assert!(!expr.trim().is_empty(), "{title}: empty expr");
                    check_expr(title, expr);
                    prometheus_exprs += 1;
                }
                "tempo" => {
                    let query = target["query"].as_str().unwrap_or_default();
                    assert!(!query.trim().is_empty(), "{title}: empty TraceQL query");
                    tempo_queries += 1;
                }
                other => panic!("{title}: unexpected datasource type {other}"),
            }
        }
    }
    assert!(
        prometheus_exprs >= 10,
        "only {prometheus_exprs} expressions"
    );
    assert!(tempo_queries >= 1, "no link from metrics to traces");
    assert!(
        text.contains("resource.service.name"),
        "traces are found by service name"
    );
}

fn check_expr(title: &str, expr: &str) {
    let mut depth = 0i32;
    for c in expr.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "{title}: unbalanced brackets in {expr}");
    }
    assert_eq!(depth, 0, "{title}: unbalanced brackets in {expr}");

    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        let var = &rest[at..];
        assert!(
            TEMPLATE_VARIABLES.iter().any(|v| var.starts_with(v)),
            "{title}: {expr} uses a template variable outside {TEMPLATE_VARIABLES:?}"
        );
        rest = &rest[at + 1..];
    }

    let mut found = false;
    for (at, _) in expr.match_indices("maillaser_") {
        let name: String = expr[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            known_metric(&name),
            "{title}: {name} is not a MailLaser metric"
        );
        found = true;
    }
    assert!(found, "{title}: {expr} reads no MailLaser metric");
}

#[test]
fn dashboard_is_mounted_where_the_provider_looks() {
    let compose = yaml("docker-compose.yml");
    let volumes = strings(&compose["services"]["grafana"]["volumes"]);
    for (source, target) in [
        (
            "./deploy/grafana/provisioning/datasources",
            "/etc/grafana/provisioning/datasources",
        ),
        (
            "./deploy/grafana/provisioning/dashboards",
            "/etc/grafana/provisioning/dashboards",
        ),
        ("./deploy/grafana/dashboards", "/var/lib/grafana/dashboards"),
    ] {
        assert!(
            volumes
                .iter()
                .any(|v| v.starts_with(&format!("{source}:{target}"))),
            "grafana does not mount {source} at {target}"
        );
    }
    assert!(Path::new(&root().join("deploy/grafana/dashboards/maillaser.json")).exists());
}
