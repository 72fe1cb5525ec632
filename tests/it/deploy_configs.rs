//! Checks the deployment files that cannot be run here (there is no Docker
//! engine on this machine): the collector config, the compose file, the
//! Prometheus config and the Grafana provisioning and dashboard.
//!
//! The external validators (`promtool`, `dclint`) are installed by
//! `scripts/test`; without one its test is skipped (see `require_tool!`).

use std::collections::BTreeSet;
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

/// Runs an external validator in the repository and asserts it succeeded.
fn run_tool(program: &Path, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running `{}`: {e}", program.display()));
    assert!(
        output.status.success(),
        "`{} {}` failed ({}):\n{}{}",
        program.display(),
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
    // promtool comes with the Debian package `prometheus`.
    let [promtool] = require_tool!("promtool");
    run_tool(
        &promtool,
        &["check", "config", "deploy/prometheus/prometheus.yml"],
    );
}

// ---- (c) + (e) docker-compose.yml ---------------------------------------

#[test]
fn compose_file_passes_dclint() {
    // `scripts/test` installs dclint into node_modules/ with npm; it runs on
    // Node.js (Debian package `nodejs`).
    let [dclint, _node] = require_tool!("dclint", "node");
    run_tool(&dclint, &["docker-compose.yml", "-q"]);
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
    "maillaser_webhook_rejections_total",
    "maillaser_circuit_breaker_state",
    "maillaser_circuit_breaker_transitions_total",
    "maillaser_connections_refused_total",
    "maillaser_spool_depth",
    "maillaser_spool_dead_letters_total",
    "maillaser_buffered_bytes",
    "maillaser_auth_results_total",
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

// ---- (f) Grafana provisioning: variables, exemplars -------------------------

/// Every file below `dir` whose name ends with one of `suffixes`, sorted.
fn files_below(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_below(&path, suffixes));
        } else if suffixes
            .iter()
            .any(|suffix| path.to_string_lossy().ends_with(suffix))
        {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The string values of a YAML document with their paths (`a.b[0].c`).
fn yaml_strings(value: &Yaml, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Yaml::String(text) => out.push((path.to_owned(), text.clone())),
        Yaml::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                yaml_strings(item, &format!("{path}[{index}]"), out);
            }
        }
        Yaml::Mapping(map) => {
            for (key, item) in map {
                let key = key
                    .as_str()
                    .map_or_else(|| format!("{key:?}"), str::to_owned);
                let path = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                yaml_strings(item, &path, out);
            }
        }
        Yaml::Tagged(tagged) => yaml_strings(&tagged.value, path, out),
        Yaml::Null | Yaml::Bool(_) | Yaml::Number(_) => {}
    }
}

/// Grafana expands `$VAR` and `${VAR}` in provisioning values from its
/// environment, so a PromQL `$__rate_interval` there arrives empty: a
/// literal `$` must be written `$$`.
#[test]
fn grafana_provisioning_escapes_every_dollar() {
    let dir = root().join("deploy/grafana/provisioning");
    let files = files_below(&dir, &[".yaml", ".yml"]);
    assert!(
        !files.is_empty(),
        "no provisioning files in {}",
        dir.display()
    );
    let mut lone = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root()).unwrap().display().to_string();
        let mut values = Vec::new();
        yaml_strings(&yaml(&rel), "", &mut values);
        for (path, text) in values {
            // A run of dollars is literal only when it is all `$$` pairs.
            let mut rest = text.as_str();
            while let Some(at) = rest.find('$') {
                let run = rest[at..].len() - rest[at..].trim_start_matches('$').len();
                if run % 2 == 1 {
                    lone.push(format!("{rel}: {path}: {text}"));
                    break;
                }
                rest = &rest[at + run..];
            }
        }
    }
    assert!(
        lone.is_empty(),
        "Grafana expands a lone `$` (write `$$` for a literal one):\n{}",
        lone.join("\n")
    );
}

/// Exemplars link to Tempo by the trace id label Tempo writes: `traceID`.
#[test]
fn exemplar_links_to_tempo_use_the_trace_id_label() {
    let config = yaml("deploy/grafana/provisioning/datasources/datasources.yaml");
    let datasources = config["datasources"].as_sequence().expect("datasources");
    let tempo: BTreeSet<&str> = datasources
        .iter()
        .filter(|ds| ds["type"].as_str() == Some("tempo"))
        .map(|ds| ds["uid"].as_str().expect("datasource uid"))
        .collect();
    assert!(!tempo.is_empty(), "no Tempo data source");
    for ds in datasources {
        let name = ds["name"].as_str().unwrap_or("<unnamed>");
        let destinations = ds["jsonData"]["exemplarTraceIdDestinations"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        for destination in destinations {
            let Some(uid) = destination["datasourceUid"].as_str() else {
                continue;
            };
            if tempo.contains(uid) {
                assert_eq!(
                    destination["name"].as_str(),
                    Some("traceID"),
                    "{name}: the exemplar destination to Tempo ({uid}) must use the label `traceID`"
                );
            }
        }
    }
}

/// MailLaser's histograms carry no exemplars: a query asking for them only
/// costs a round trip and shows nothing.
#[test]
fn dashboard_queries_ask_for_no_exemplars() {
    let dir = root().join("deploy/grafana/dashboards");
    let files = files_below(&dir, &[".json"]);
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    let mut asking = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root()).unwrap().display().to_string();
        let dashboard: Json =
            serde_json::from_str(&read(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
        for panel in all_panels(&panels) {
            let title = panel["title"].as_str().unwrap_or("<untitled>");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if target["exemplar"] == Json::Bool(true) {
                    let id = target["refId"].as_str().unwrap_or("?");
                    asking.push(format!("{rel}: {title}: query {id}"));
                }
            }
        }
    }
    assert!(
        asking.is_empty(),
        "`\"exemplar\": true` on queries of histograms without exemplars:\n{}",
        asking.join("\n")
    );
}
