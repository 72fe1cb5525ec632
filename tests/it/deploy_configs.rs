//! Checks the deployment files that cannot be run here (there is no Docker
//! engine or Kubernetes cluster on this machine): the collector config, the
//! compose file, the Prometheus config, the Grafana provisioning and
//! dashboard, and the Kubernetes manifests (deploy/kubernetes/).
//!
//! The external validators (`promtool`, `dclint`, `kubernetes-validate`,
//! `yamllint`) are installed by `scripts/test`; without one its test is
//! skipped (see `require_tool!`).

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
    let tls_port = mail_laser["MAIL_LASER_TLS_PORT"]
        .as_str()
        .expect("the compose stack serves implicit TLS");
    assert!(
        strings(&compose["services"]["mail-laser"]["ports"])
            .contains(&format!("127.0.0.1:{tls_port}:{tls_port}")),
        "MAIL_LASER_TLS_PORT {tls_port} is published on loopback"
    );
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
    "maillaser_config_reload_total",
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

// ---- (f) Kubernetes manifests ----------------------------------------------

/// Where the manifests live: `common/` is applied together with one of the
/// delivery-mode folders (deploy/kubernetes/README.md).
const KUBERNETES: &str = "deploy/kubernetes";
const KUBERNETES_MODES: &[&str] = &["sync", "postgres-spool"];

/// The Kubernetes versions whose schemas (bundled with kubernetes-validate)
/// the manifests must pass: the oldest one the README promises, and the
/// newest the pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.33.0", "1.37.0"];

/// Every YAML file below deploy/kubernetes/, relative to the repository.
fn kubernetes_files() -> Vec<String> {
    let files = files_below(&root().join(KUBERNETES), &[".yaml", ".yml"]);
    assert!(!files.is_empty(), "no manifests in {KUBERNETES}");
    files
        .iter()
        .map(|file| file.strip_prefix(root()).unwrap().display().to_string())
        .collect()
}

/// The documents of a (possibly multi-document) YAML file.
fn yaml_documents(rel: &str) -> Vec<Yaml> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(&read(rel))
        .map(|document| {
            Yaml::deserialize(document).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// The objects `kubectl apply -f common/ -f MODE/` would create.
fn kubernetes_objects(mode: &str) -> Vec<Yaml> {
    let objects: Vec<Yaml> = kubernetes_files()
        .iter()
        .filter(|rel| {
            rel.starts_with(&format!("{KUBERNETES}/common/"))
                || rel.starts_with(&format!("{KUBERNETES}/{mode}/"))
        })
        .flat_map(|rel| yaml_documents(rel))
        .collect();
    assert!(!objects.is_empty(), "no objects for {mode}");
    objects
}

/// The one object of `kind` in `objects`.
fn one_of<'a>(objects: &'a [Yaml], kind: &str, mode: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = objects
        .iter()
        .filter(|object| object["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "{mode}: expected one {kind}");
    found[0]
}

/// The Service named `name`.
fn service<'a>(objects: &'a [Yaml], name: &str, mode: &str) -> &'a Yaml {
    objects
        .iter()
        .find(|o| {
            o["kind"].as_str() == Some("Service") && o["metadata"]["name"].as_str() == Some(name)
        })
        .unwrap_or_else(|| panic!("{mode}: no Service {name}"))
}

/// A YAML scalar as text (`"2525"`, `2525` and `true` alike).
fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(text) => Some(text.clone()),
        Yaml::Number(number) => Some(number.to_string()),
        Yaml::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A memory quantity (`768Mi`, `1Gi`, `500M`, bytes) in bytes.
fn quantity_bytes(quantity: &str) -> u64 {
    const UNITS: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (number, factor) = UNITS
        .iter()
        .find_map(|(unit, factor)| quantity.strip_suffix(unit).map(|n| (n, *factor)))
        .unwrap_or((quantity, 1));
    number
        .parse::<u64>()
        .unwrap_or_else(|e| panic!("memory quantity {quantity}: {e}"))
        * factor
}

/// `MAIL_LASER_*` names in `mail-laser --help`.
fn help_variables() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_mail-laser"))
        .arg("--help")
        .output()
        .expect("running mail-laser --help");
    assert!(output.status.success(), "mail-laser --help failed");
    let help = String::from_utf8(output.stdout).expect("--help is UTF-8");
    let mut names = BTreeSet::new();
    let mut rest = help.as_str();
    while let Some(at) = rest.find("MAIL_LASER_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    assert!(
        names.contains("MAIL_LASER_PORT"),
        "unexpected --help:\n{help}"
    );
    names
}

/// The MailLaser container of a Deployment, and its environment: name →
/// literal value (`None` when it comes from `valueFrom`).
fn container_env(deployment: &Yaml) -> (&Yaml, Vec<(String, Option<String>)>) {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    let container = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("mail-laser"))
        .expect("a container named mail-laser");
    let env = container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|var| {
            let name = var["name"].as_str().expect("env name").to_owned();
            (name, scalar(&var["value"]))
        })
        .collect();
    (container, env)
}

fn env_value<'a>(env: &'a [(String, Option<String>)], name: &str, mode: &str) -> &'a str {
    env.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
        .unwrap_or_else(|| panic!("{mode}: {name} is not set to a value"))
}

/// The container port a probe or Service names (by name or number).
fn resolve_port(container: &Yaml, port: &Yaml, what: &str) -> u64 {
    let ports = container["ports"].as_sequence().expect("container ports");
    match port {
        Yaml::String(name) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name.as_str()))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{what}: the container has no port named {name}")),
        Yaml::Number(number) => {
            let number = number.as_u64().expect("port number");
            assert!(
                ports
                    .iter()
                    .any(|p| p["containerPort"].as_u64() == Some(number)),
                "{what}: the container does not expose {number}"
            );
            number
        }
        other => panic!("{what}: unexpected port {other:?}"),
    }
}

/// `selector` ⊆ `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let (Some(selector), Some(labels)) = (selector.as_mapping(), labels.as_mapping()) else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_pass_kubernetes_validate() {
    // `scripts/test` installs kubernetes-validate into .tools/venv (pip); it
    // carries the schemas of each Kubernetes version, so this runs offline.
    let [validate] = require_tool!("kubernetes-validate");
    let files = kubernetes_files();
    for version in KUBERNETES_VERSIONS {
        let mut args = vec!["--strict", "--quiet", "--kubernetes-version", version];
        args.extend(files.iter().map(String::as_str));
        run_tool(&validate, &args);
    }
}

#[test]
fn kubernetes_manifests_pass_yamllint() {
    let [yamllint] = require_tool!("yamllint");
    // yamllint's default rules; --strict fails on warnings too.
    run_tool(&yamllint, &["-d", "default", "--strict", KUBERNETES]);
}

#[test]
fn kubernetes_variables_are_settings_of_the_binary() {
    let known = help_variables();
    for mode in KUBERNETES_MODES {
        let objects = kubernetes_objects(mode);
        let (_, env) = container_env(one_of(&objects, "Deployment", mode));
        for (name, _) in &env {
            if name.starts_with("MAIL_LASER_") {
                assert!(
                    known.contains(name),
                    "{mode}: {name} is not a setting in `mail-laser --help`"
                );
            } else {
                assert!(
                    ["RUST_LOG"].contains(&name.as_str()) || name.starts_with("OTEL_"),
                    "{mode}: {name} is not a variable MailLaser reads"
                );
            }
        }
    }
}

#[test]
fn kubernetes_deployments_match_the_binary_and_the_image() {
    let drain = mail_laser::config::DRAIN_TIMEOUT.as_secs();
    let grace = mail_laser::spool::SHUTDOWN_GRACE.as_secs();
    // The documents say the same as the constants.
    assert!(
        read("docs/smtp.md").contains(&format!("After {drain} seconds")),
        "docs/smtp.md: the drain deadline is not {drain} s"
    );
    assert!(
        read("docs/delivery.md").contains(&format!("gives those in flight {grace} seconds")),
        "docs/delivery.md: the spool worker's grace is not {grace} s"
    );
    let dockerfile = read("Dockerfile");
    let uid: u64 = dockerfile
        .split("--uid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("the Dockerfile's user has a --uid");

    for mode in KUBERNETES_MODES {
        let objects = kubernetes_objects(mode);
        let deployment = one_of(&objects, "Deployment", mode);
        let name = deployment["metadata"]["name"].as_str().expect("name");
        let pod = &deployment["spec"]["template"];
        let labels = &pod["metadata"]["labels"];
        let spec = &pod["spec"];
        assert!(
            selects(&deployment["spec"]["selector"]["matchLabels"], labels),
            "{mode}: the Deployment's selector does not match its pods"
        );
        let (container, env) = container_env(deployment);

        // Ports: what the environment sets is what is exposed and probed.
        let smtp_port: u64 = env_value(&env, "MAIL_LASER_PORT", mode).parse().unwrap();
        let http_port: u64 = env_value(&env, "MAIL_LASER_HEALTH_PORT", mode)
            .parse()
            .unwrap();
        let named = |port: &str| resolve_port(container, &Yaml::from(port), mode);
        assert_eq!(named("smtp"), smtp_port, "{mode}: port smtp");
        assert_eq!(named("http"), http_port, "{mode}: port http");
        for (probe, path) in [
            ("readinessProbe", "/ready"),
            ("livenessProbe", "/health"),
            ("startupProbe", "/health"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{mode}: {probe}");
            assert_eq!(
                resolve_port(container, &get["port"], probe),
                http_port,
                "{mode}: {probe} is not on the HTTP port"
            );
        }
        for address in ["MAIL_LASER_BIND_ADDRESS", "MAIL_LASER_HEALTH_BIND_ADDRESS"] {
            assert_eq!(
                env_value(&env, address, mode),
                "0.0.0.0",
                "{mode}: probes and Services reach the pod's address"
            );
        }

        // Shutdown: the kubelet waits longer than MailLaser may take.
        let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        let period = spec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds");
        assert!(
            period > pre_stop + drain + grace,
            "{mode}: terminationGracePeriodSeconds {period} <= preStop {pre_stop} s + drain {drain} s + spool grace {grace} s"
        );

        // Security.
        let pod_security = &spec["securityContext"];
        let security = &container["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"].as_bool(), Some(true), "{mode}");
        assert_eq!(
            pod_security["runAsUser"].as_u64(),
            Some(uid),
            "{mode}: the image's user"
        );
        assert_eq!(
            pod_security["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault"),
            "{mode}"
        );
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{mode}"
        );
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{mode}"
        );
        assert_eq!(
            strings(&security["capabilities"]["drop"]),
            ["ALL"],
            "{mode}"
        );
        assert!(
            security["capabilities"].get("add").is_none(),
            "{mode}: no capability"
        );
        assert_eq!(
            spec["automountServiceAccountToken"].as_bool(),
            Some(false),
            "{mode}"
        );
        assert_eq!(
            spec["enableServiceLinks"].as_bool(),
            Some(false),
            "{mode}: service links put MAIL_LASER_* variables into the environment"
        );

        // The image is this version of MailLaser.
        let image = container["image"].as_str().expect("image");
        assert!(
            image.ends_with(&format!("/mail-laser:{}", env!("CARGO_PKG_VERSION"))),
            "{mode}: image {image} is not mail-laser:{}",
            env!("CARGO_PKG_VERSION")
        );

        // Memory: the limit holds the message budget and more.
        let budget: u64 = env_value(&env, "MAIL_LASER_MAX_BUFFERED_BYTES", mode)
            .parse()
            .unwrap();
        let resources = &container["resources"];
        let limit = quantity_bytes(
            resources["limits"]["memory"]
                .as_str()
                .expect("memory limit"),
        );
        assert!(
            limit >= budget * 2,
            "{mode}: memory limit {limit} B under twice MAIL_LASER_MAX_BUFFERED_BYTES {budget} B (README, Security: peaks reach the budget plus 300 MB)"
        );
        assert!(
            resources["requests"]["cpu"].as_str().is_some(),
            "{mode}: the HorizontalPodAutoscaler needs a CPU request"
        );

        // Spread over nodes.
        let spread = spec["topologySpreadConstraints"]
            .as_sequence()
            .expect("topologySpreadConstraints");
        assert!(
            spread.iter().any(|c| {
                c["topologyKey"].as_str() == Some("kubernetes.io/hostname")
                    && selects(&c["labelSelector"]["matchLabels"], labels)
            }),
            "{mode}: pods are not spread over nodes"
        );

        // The routes file comes from the ConfigMap, mounted as a folder.
        let routes = env_value(&env, "MAIL_LASER_ROUTES", mode);
        let (folder, file) = routes.rsplit_once('/').expect("an absolute path");
        let mount = container["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(folder))
            .unwrap_or_else(|| panic!("{mode}: nothing is mounted at {folder}"));
        assert!(
            mount.get("subPath").is_none(),
            "{mode}: a subPath mount is never updated"
        );
        let volume = spec["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mounted volume");
        let config_map_name = volume["configMap"]["name"]
            .as_str()
            .expect("a ConfigMap volume");
        let config_map = one_of(&objects, "ConfigMap", mode);
        assert_eq!(
            config_map["metadata"]["name"].as_str(),
            Some(config_map_name),
            "{mode}"
        );
        assert!(
            config_map["data"][file].as_str().is_some(),
            "{mode}: the ConfigMap has no {file}"
        );

        // Services select these pods and name their ports.
        let smtp = service(&objects, "mail-laser-smtp", mode);
        assert!(
            selects(&smtp["spec"]["selector"], labels),
            "{mode}: SMTP Service selector"
        );
        assert_eq!(
            smtp["spec"]["externalTrafficPolicy"].as_str(),
            Some("Local")
        );
        let smtp_ports = smtp["spec"]["ports"].as_sequence().expect("ports");
        assert_eq!(smtp_ports.len(), 1);
        assert_eq!(
            smtp_ports[0]["port"].as_u64(),
            Some(25),
            "{mode}: SMTP on 25"
        );
        assert_eq!(
            resolve_port(container, &smtp_ports[0]["targetPort"], "SMTP Service"),
            smtp_port
        );
        let metrics = service(&objects, "mail-laser-metrics", mode);
        assert!(
            selects(&metrics["spec"]["selector"], labels),
            "{mode}: metrics Service selector"
        );
        assert_eq!(metrics["spec"]["type"].as_str(), Some("ClusterIP"));
        let metrics_ports = metrics["spec"]["ports"].as_sequence().expect("ports");
        assert_eq!(
            resolve_port(
                container,
                &metrics_ports[0]["targetPort"],
                "metrics Service"
            ),
            http_port
        );
        let annotations = &metrics["metadata"]["annotations"];
        assert_eq!(
            annotations["prometheus.io/port"].as_str(),
            Some(http_port.to_string().as_str()),
            "{mode}: Prometheus scrapes the HTTP port"
        );
        assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));

        // Disruptions and autoscaling.
        let budget = one_of(&objects, "PodDisruptionBudget", mode);
        assert!(
            selects(&budget["spec"]["selector"]["matchLabels"], labels),
            "{mode}: PDB selector"
        );
        assert!(
            budget["spec"]["maxUnavailable"].as_u64() == Some(1)
                || budget["spec"]["minAvailable"].as_u64().is_some(),
            "{mode}: the PodDisruptionBudget allows one pod down at a time"
        );
        let autoscaler = one_of(&objects, "HorizontalPodAutoscaler", mode);
        let target = &autoscaler["spec"]["scaleTargetRef"];
        assert_eq!(target["kind"].as_str(), Some("Deployment"));
        assert_eq!(
            target["name"].as_str(),
            Some(name),
            "{mode}: the HPA scales the Deployment"
        );
        assert!(
            deployment["spec"].get("replicas").is_none(),
            "{mode}: the HorizontalPodAutoscaler owns `replicas`"
        );
        let min = autoscaler["spec"]["minReplicas"]
            .as_u64()
            .expect("minReplicas");
        assert!(min >= 2, "{mode}: one pod is no redundancy");
        assert!(
            autoscaler["spec"]["metrics"]
                .as_sequence()
                .expect("metrics")
                .iter()
                .any(|m| m["resource"]["name"].as_str() == Some("cpu")),
            "{mode}: the HPA scales on CPU"
        );
    }
}

#[test]
fn kubernetes_modes_differ_only_in_delivery() {
    let sync = kubernetes_objects("sync");
    let postgres = kubernetes_objects("postgres-spool");
    let sync_deployment = one_of(&sync, "Deployment", "sync");
    let postgres_deployment = one_of(&postgres, "Deployment", "postgres-spool");

    let (_, sync_env) = container_env(sync_deployment);
    assert_eq!(env_value(&sync_env, "MAIL_LASER_DELIVERY", "sync"), "sync");
    let (container, postgres_env) = container_env(postgres_deployment);
    assert_eq!(
        env_value(&postgres_env, "MAIL_LASER_DELIVERY", "postgres-spool"),
        "spool"
    );
    // Credentials come from a Secret, never from the manifest; no folder spool.
    let url = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|var| var["name"].as_str() == Some("MAIL_LASER_SPOOL_URL"))
        .expect("MAIL_LASER_SPOOL_URL");
    assert!(url.get("value").is_none(), "the queue's URL is inlined");
    let secret = &url["valueFrom"]["secretKeyRef"];
    let (secret_name, secret_key) = (
        secret["name"].as_str().expect("secret name"),
        secret["key"].as_str().expect("secret key"),
    );
    let create = format!("kubectl create secret generic {secret_name}");
    let literal = format!("--from-literal={secret_key}=");
    for rel in [&format!("{KUBERNETES}/README.md"), "docs/scaling.md"] {
        let text = read(rel);
        assert!(
            text.contains(&create) && text.contains(&literal),
            "{rel} does not show `{create} {literal}…`"
        );
    }
    assert!(
        postgres_env
            .iter()
            .all(|(name, _)| name != "MAIL_LASER_SPOOL_DIR"),
        "a folder spool is per pod: not with N replicas of a Deployment"
    );
    env_value(&postgres_env, "MAIL_LASER_SPOOL_LEASE", "postgres-spool");

    // Everything else is the same: the two Deployments without the delivery
    // settings and without comments are equal.
    let strip = |deployment: &Yaml| {
        let mut deployment = deployment.clone();
        let containers = deployment["spec"]["template"]["spec"]["containers"]
            .as_sequence_mut()
            .unwrap();
        for container in containers {
            container["env"].as_sequence_mut().unwrap().retain(|var| {
                let name = var["name"].as_str().unwrap();
                name != "MAIL_LASER_DELIVERY" && !name.starts_with("MAIL_LASER_SPOOL_")
            });
        }
        deployment
    };
    assert_eq!(
        strip(sync_deployment),
        strip(postgres_deployment),
        "the sync and postgres-spool Deployments differ in more than delivery"
    );
}

#[test]
fn kubernetes_routes_pass_check_routes() {
    let objects = kubernetes_objects("sync");
    let config_map = one_of(&objects, "ConfigMap", "common");
    let routes = config_map["data"]["routes.toml"]
        .as_str()
        .expect("routes.toml");
    let dir = std::env::temp_dir().join(format!("mail-laser-k8s-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("routes.toml");
    std::fs::write(&file, routes).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mail-laser"))
        .arg("check-routes")
        .arg(&file)
        .args(["support@example.com", "pager@alerts.example.com"])
        .env_remove("MAIL_LASER_ALLOW_INSECURE_WEBHOOK")
        .output()
        .expect("running mail-laser check-routes");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "the ConfigMap's routes.toml fails check-routes ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
