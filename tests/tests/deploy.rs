//! Static checks of `deploy/`: nothing here can run on a cluster or a Docker engine, so the
//! manifests are rendered and validated instead. Needs `kubectl` (for `kubectl kustomize`),
//! `promtool` and the validators venv that `make setup` installs
//! (`scripts/fetch-validators.sh`).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

/// Every binary, its admin port (the `LOGCANARY_ADMIN_ADDR` defaults) and whether it scores
/// (links ONNX Runtime and needs the model).
const BINARIES: &[(&str, u16, bool)] = &[
    ("ingest-api", 9100, false),
    ("analysis-worker", 9101, true),
    ("realtime-worker", 9102, true),
    ("notifier", 9103, false),
    ("scheduler", 9104, false),
];

const OVERLAYS: &[&str] = &["dev", "prod"];

/// Custom resources kubernetes-validate has no schema for, and the schema we check them with.
const CRD_SCHEMAS: &[(&str, &str)] = &[
    ("ScaledObject", "scaledobject.json"),
    ("TriggerAuthentication", "triggerauthentication.json"),
    ("PodMonitor", "podmonitor.json"),
];

/// Seconds a pod needs after SIGTERM at most: ingest-api's HTTP shutdown timeout (read from
/// the code below) or a worker's in-flight batch plus three 5 s channel/connection closes.
const WORKER_DRAIN_SECS: i64 = 30;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

fn venv_bin(tool: &str) -> PathBuf {
    let path = root().join(".cache/validators-venv/bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run `make setup` (scripts/fetch-validators.sh)",
        path.display()
    );
    path
}

fn run(cmd: &mut Command, input: Option<&[u8]>) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run `make setup`)"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    if let Some(bytes) = input {
        stdin.write_all(bytes).expect("writing stdin");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("waiting for the command");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn render(overlay: &str) -> String {
    run(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(root().join("deploy/k8s/overlays").join(overlay)),
        None,
    )
}

/// The rendered YAML as JSON objects (PyYAML from the validators venv).
fn objects(yaml: &str) -> Vec<Value> {
    let json = run(
        Command::new(venv_bin("python")).args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ]),
        Some(yaml.as_bytes()),
    );
    serde_json::from_str(&json).expect("rendered manifests as JSON")
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

/// Every Rust source file of the binaries' crates, concatenated: the env names and metric
/// names they use appear there as string literals.
fn crate_sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir)
            .expect("readable source dir")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    for krate in std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .flatten()
    {
        let src = krate.path().join("src");
        if src.is_dir() {
            walk(&src, &mut out);
        }
    }
    out
}

#[test]
fn every_overlay_renders_and_validates_against_the_schemas() {
    for overlay in OVERLAYS {
        let yaml = render(overlay);
        let dir = tempfile_dir(overlay);
        let file = dir.join("rendered.yaml");
        std::fs::write(&file, &yaml).expect("writing the rendered overlay");

        // Built-in kinds: the Kubernetes OpenAPI schemas, rejecting unknown fields.
        let report = run(
            Command::new(venv_bin("kubernetes-validate"))
                .args(["--strict", "--quiet"])
                .arg(&file),
            None,
        );
        assert!(
            !report.contains("ERROR"),
            "{overlay}: kubernetes-validate reported:\n{report}"
        );

        // Custom resources: our schemas, written from the projects' documented fields.
        let objs = objects(&yaml);
        let known: BTreeSet<&str> = CRD_SCHEMAS.iter().map(|(k, _)| *k).collect();
        let builtin_ok = [
            "Namespace",
            "ConfigMap",
            "Secret",
            "Service",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Job",
        ];
        for o in &objs {
            let kind = o["kind"].as_str().unwrap_or_default();
            assert!(
                known.contains(kind) || builtin_ok.contains(&kind),
                "{overlay}: {kind} {} has no schema check",
                name(o)
            );
        }
        for (kind, schema) in CRD_SCHEMAS {
            let of: Vec<&Value> = of_kind(&objs, kind);
            assert!(!of.is_empty(), "{overlay}: no {kind} rendered");
            let schema = root().join("deploy/k8s/schemas").join(schema);
            let docs = serde_json::to_string(&of).expect("json");
            run(
                Command::new(venv_bin("python"))
                    .args([
                        "-c",
                        "import json, sys, jsonschema\n\
                         schema = json.load(open(sys.argv[1]))\n\
                         for doc in json.load(sys.stdin):\n    \
                             jsonschema.validate(doc, schema)",
                    ])
                    .arg(&schema),
                Some(docs.as_bytes()),
            );
        }
    }
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("logcanary-deploy-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn deployments_follow_the_operating_rules() {
    let ingest_startup = std::fs::read_to_string(root().join("crates/ingest-api/src/startup.rs"))
        .expect("ingest-api startup.rs");
    let http_drain: i64 = ingest_startup
        .split(".shutdown_timeout(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("ingest-api sets an HTTP shutdown_timeout");
    let sources = crate_sources();

    for overlay in OVERLAYS {
        let objs = objects(&render(overlay));
        let deployments = of_kind(&objs, "Deployment");
        let names: BTreeSet<&str> = deployments.iter().map(|d| name(d)).collect();
        let expected: BTreeSet<&str> = BINARIES.iter().map(|(b, _, _)| *b).collect();
        assert_eq!(names, expected, "{overlay}: one Deployment per binary");

        // Autoscaling: an HPA or a ScaledObject per Deployment, never both.
        let mut scalers: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for hpa in of_kind(&objs, "HorizontalPodAutoscaler") {
            let target = hpa["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .unwrap_or_default();
            scalers.entry(target.to_owned()).or_default().push("HPA");
        }
        for so in of_kind(&objs, "ScaledObject") {
            let target = so["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .unwrap_or_default();
            assert!(
                names.contains(target),
                "{overlay}: ScaledObject targets {target}"
            );
            scalers
                .entry(target.to_owned())
                .or_default()
                .push("ScaledObject");
        }
        for (target, kinds) in &scalers {
            assert_eq!(kinds.len(), 1, "{overlay}: {target} has {kinds:?}");
        }
        for worker in ["analysis-worker", "realtime-worker", "notifier"] {
            assert_eq!(
                scalers.get(worker).map(Vec::as_slice),
                Some(&["ScaledObject"][..]),
                "{overlay}: {worker} scales on its queue with KEDA"
            );
        }
        assert_eq!(
            scalers.get("ingest-api").map(Vec::as_slice),
            Some(&["HPA"][..])
        );
        assert!(
            !scalers.contains_key("scheduler"),
            "{overlay}: scheduler does not scale"
        );

        for d in &deployments {
            let dname = name(d);
            let (_, admin_port, _) = BINARIES
                .iter()
                .find(|(b, _, _)| *b == dname)
                .expect("a known binary");
            let pod = &d["spec"]["template"]["spec"];
            if dname == "scheduler" {
                assert_eq!(d["spec"]["replicas"], 1, "{overlay}: one scheduler");
            }

            let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
            let drain = if dname == "ingest-api" {
                http_drain
            } else {
                WORKER_DRAIN_SECS
            };
            assert!(
                grace > drain,
                "{overlay}: {dname} grace {grace}s <= drain {drain}s"
            );

            let psc = &pod["securityContext"];
            assert_eq!(psc["runAsNonRoot"], true, "{overlay}: {dname} runAsNonRoot");
            assert!(
                psc["runAsUser"].as_i64().unwrap_or(0) > 0,
                "{overlay}: {dname} uid"
            );

            let containers = pod["containers"].as_array().expect("containers");
            assert_eq!(containers.len(), 1, "{overlay}: {dname}: one container");
            let c = &containers[0];
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{overlay}: {dname}"
            );
            assert!(
                c["resources"]["requests"].is_object(),
                "{overlay}: {dname} requests"
            );
            assert!(
                c["resources"]["limits"].is_object(),
                "{overlay}: {dname} limits"
            );

            // Probes hit the admin server's paths on the admin port.
            let ports = c["ports"].as_array().expect("ports");
            let admin = ports
                .iter()
                .find(|p| p["name"] == "admin")
                .unwrap_or_else(|| panic!("{overlay}: {dname} names its admin port"));
            assert_eq!(admin["containerPort"], *admin_port, "{overlay}: {dname}");
            let env: BTreeMap<&str, &str> = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str().unwrap_or(""))))
                .collect();
            assert_eq!(
                env.get("LOGCANARY_ADMIN_ADDR").copied(),
                Some(format!("0.0.0.0:{admin_port}").as_str()),
                "{overlay}: {dname} binds the admin port the probes use"
            );
            for (probe, path) in [
                ("livenessProbe", "/livez"),
                ("readinessProbe", "/readyz"),
                ("startupProbe", "/livez"),
            ] {
                let get = &c[probe]["httpGet"];
                assert_eq!(get["path"], path, "{overlay}: {dname} {probe}");
                assert!(
                    get["port"] == "admin" || get["port"] == *admin_port,
                    "{overlay}: {dname} {probe} port {}",
                    get["port"]
                );
            }
            assert!(sources.contains("\"/livez\"") && sources.contains("\"/readyz\""));

            // Every env var set is one the binaries read.
            for var in env.keys() {
                assert!(
                    sources.contains(&format!("\"{var}\"")),
                    "{overlay}: {dname} sets {var}, which no binary reads"
                );
            }
        }

        // ConfigMap and Secret keys are env vars too (envFrom).
        for kind in ["ConfigMap", "Secret"] {
            for o in of_kind(&objs, kind) {
                for field in ["data", "stringData"] {
                    for key in o[field].as_object().into_iter().flatten().map(|(k, _)| k) {
                        // `host` is KEDA's, read through TriggerAuthentication; RUST_LOG is
                        // tracing-subscriber's EnvFilter.
                        if key == "host" || key == "RUST_LOG" {
                            continue;
                        }
                        assert!(
                            sources.contains(&format!("\"{key}\"")),
                            "{overlay}: {kind} {} sets {key}, which no binary reads",
                            name(o)
                        );
                    }
                }
            }
        }
        assert_eq!(of_kind(&objs, "Job").len(), 1, "{overlay}: a migrate Job");
        assert!(!of_kind(&objs, "PodDisruptionBudget").is_empty());
        assert!(!of_kind(&objs, "PodMonitor").is_empty());
    }
}

#[test]
fn the_dockerfile_has_one_runtime_target_per_binary() {
    let dockerfile =
        std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    // Stage name -> its lines.
    let mut stages: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let mut current = None;
    for line in dockerfile.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            assert!(
                words.len() == 4 && words[2].eq_ignore_ascii_case("AS"),
                "every stage is named: {line}"
            );
            current = Some(words[3].to_owned());
            stages.insert(words[3].to_owned(), (words[1].to_owned(), Vec::new()));
        } else if let Some(stage) = &current {
            stages
                .get_mut(stage)
                .expect("stage")
                .1
                .push(line.to_owned());
        }
    }
    // What a stage and its parents (FROM another stage) contain.
    let lineage = |stage: &str| -> Vec<String> {
        let mut lines = Vec::new();
        let mut at = Some(stage.to_owned());
        while let Some(s) = at {
            let Some((from, own)) = stages.get(&s) else {
                break;
            };
            lines.extend(own.iter().cloned());
            at = stages.contains_key(from).then(|| from.clone());
        }
        lines
    };
    assert!(
        dockerfile.contains("cargo chef prepare") && dockerfile.contains("cargo chef cook"),
        "the build uses cargo-chef"
    );

    for (bin, admin_port, scores) in BINARIES {
        assert!(
            root().join("crates").join(bin).join("src/main.rs").exists(),
            "{bin} is a workspace binary"
        );
        let lines = lineage(bin);
        assert!(!lines.is_empty(), "the Dockerfile has a `{bin}` target");
        let copies_binary = format!("/src/target/release/{bin} ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("COPY --from=builder") && l.contains(&copies_binary)),
            "{bin}: copies its release binary from the builder"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ENTRYPOINT") && l.contains(bin)),
            "{bin}: its entrypoint runs it"
        );
        let user = lines
            .iter()
            .find(|l| l.starts_with("USER "))
            .unwrap_or_else(|| panic!("{bin}: sets a USER"));
        assert!(
            !user.contains("root") && !user.contains(" 0"),
            "{bin}: non-root ({user})"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("EXPOSE") && l.contains(&admin_port.to_string())),
            "{bin}: exposes admin port {admin_port}"
        );
        let ort = lines.iter().any(|l| l.contains("libonnxruntime"));
        let model = lines.iter().any(|l| l.contains(".cache/models/"));
        assert_eq!(ort, *scores, "{bin}: ONNX Runtime only in scoring images");
        assert_eq!(model, *scores, "{bin}: the model only in scoring images");
    }
}

#[test]
fn the_prometheus_rules_pass_promtool() {
    let dir = root().join("deploy/prometheus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/prometheus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "rule files in deploy/prometheus");
    run(
        Command::new("promtool")
            .args(["check", "rules"])
            .args(&files),
        None,
    );

    let sources = crate_sources();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("rules");
        assert_metrics_exist(&text, &sources, &file.display().to_string());
    }
}

#[test]
fn the_grafana_dashboard_queries_metrics_the_binaries_export() {
    let dir = root().join("deploy/grafana");
    let sources = crate_sources();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/grafana").flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{} parses: {e}", path.display()));
        let panels = dash["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        for panel in panels {
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel {} has a query", panel["title"]);
            for t in targets {
                let expr = t["expr"].as_str().expect("a PromQL expr");
                assert!(
                    expr.contains("logcanary_"),
                    "panel {} queries a logcanary metric",
                    panel["title"]
                );
                assert_metrics_exist(expr, &sources, &format!("panel {}", panel["title"]));
            }
        }
        seen += 1;
    }
    assert!(seen > 0, "a dashboard in deploy/grafana");
}

/// Every `logcanary_*` name in `text` (histogram series suffixes stripped) is a metric
/// name some crate records.
fn assert_metrics_exist(text: &str, sources: &str, what: &str) {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(i) = text[at..].find("logcanary_") {
        let start = at + i;
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
        let full = &text[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| full.strip_suffix(s))
            .unwrap_or(full);
        assert!(
            sources.contains(&format!("\"{base}\"")),
            "{what}: {full} is not a metric any binary records"
        );
        at = end;
    }
}

#[test]
fn the_compose_file_runs_every_binary_with_health_checks() {
    let yaml = std::fs::read_to_string(root().join("deploy/docker-compose.yml"))
        .expect("deploy/docker-compose.yml");
    let compose = objects(&yaml).pop().expect("one YAML document");
    let services = compose["services"].as_object().expect("services");
    for infra in ["postgres", "rabbitmq", "migrate", "prometheus", "grafana"] {
        assert!(services.contains_key(infra), "compose runs {infra}");
    }
    let sources = crate_sources();
    for (bin, admin_port, _) in BINARIES {
        let s = &services[*bin];
        assert_eq!(
            s["build"]["target"], *bin,
            "{bin}: built from its Dockerfile target"
        );
        assert!(
            s["healthcheck"]["test"].is_array(),
            "{bin}: has a health check"
        );
        let deps = s["depends_on"].as_object().expect("depends_on");
        assert_eq!(
            deps["migrate"]["condition"],
            "service_completed_successfully"
        );
        assert_eq!(deps["postgres"]["condition"], "service_healthy");
        assert_eq!(deps["rabbitmq"]["condition"], "service_healthy");
        let env = s["environment"].as_object().expect("environment");
        assert_eq!(
            env["LOGCANARY_ADMIN_ADDR"],
            format!("0.0.0.0:{admin_port}"),
            "{bin}"
        );
        for var in env.keys() {
            assert!(
                sources.contains(&format!("\"{var}\"")),
                "{bin} sets {var}, which no binary reads"
            );
        }
    }
}
