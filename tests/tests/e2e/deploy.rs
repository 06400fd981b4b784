//! Static checks of `deploy/`: nothing here can run on a cluster or a Docker engine, so the
//! manifests are rendered and validated instead. Needs `kubectl` on PATH (kustomize v5),
//! `promtool`, and what `make setup` fetches into `.cache/` (`scripts/fetch-validators.sh`):
//! Debian's kubectl 1.20 (kustomize v2.0.3, which the overlays must render with too) and
//! the validators venv that `kubernetes-validate` and `scripts/validate-crds.py` run in.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{json, Value};

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

/// Kinds kubernetes-validate checks (the Kubernetes OpenAPI schemas).
const BUILTIN_KINDS: &[&str] = &[
    "Namespace",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Job",
];

/// Custom resources kubernetes-validate has no schema for: `scripts/validate-crds.py` checks
/// them against strict schemas generated from the KEDA and Prometheus Operator CRDs.
const CUSTOM_KINDS: &[&str] = &[
    "ScaledObject",
    "TriggerAuthentication",
    "PodMonitor",
    "ServiceMonitor",
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

/// Runs `cmd` with `input` on stdin: its stdout when it succeeds, else its status, stdout and
/// stderr.
fn try_run(cmd: &mut Command, input: Option<&[u8]>) -> Result<String, String> {
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
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn run(cmd: &mut Command, input: Option<&[u8]>) -> String {
    try_run(cmd, input).unwrap_or_else(|e| panic!("{e}"))
}

/// A kubectl binary that renders the overlays (`kubectl kustomize`).
struct Kubectl {
    what: &'static str,
    path: PathBuf,
}

impl Kubectl {
    /// The one on PATH (kustomize v5 on a current kubectl).
    fn on_path() -> Self {
        Self {
            what: "kubectl on PATH",
            path: PathBuf::from("kubectl"),
        }
    }

    /// Debian bookworm's kubernetes-client (kubectl 1.20, kustomize v2.0.3), the one
    /// `scripts/services.sh` installs when a machine has no kubectl.
    fn debian() -> Self {
        let path = root().join(".cache/kubectl-debian/kubectl");
        assert!(
            path.exists(),
            "{} is missing: run `make setup` (scripts/fetch-validators.sh)",
            path.display()
        );
        Self {
            what: "Debian's kubectl (.cache/kubectl-debian)",
            path,
        }
    }

    /// The client version, e.g. `v1.32.4` (from `kubectl version --client`; kubectl 1.20
    /// prints a Go struct with a `GitVersion` field).
    fn version(&self) -> String {
        let out = run(Command::new(&self.path).args(["version", "--client"]), None);
        let line = out.lines().next().unwrap_or_default().trim();
        line.split("GitVersion:\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .or_else(|| line.strip_prefix("Client Version: "))
            .unwrap_or(line)
            .to_owned()
    }

    fn kustomize(&self, overlay: &str) -> String {
        try_run(
            Command::new(&self.path)
                .arg("kustomize")
                .arg(root().join("deploy/k8s/overlays").join(overlay)),
            None,
        )
        .unwrap_or_else(|e| {
            panic!(
                "overlays/{overlay} does not render with {} ({}):\n{e}",
                self.what,
                self.version()
            )
        })
    }
}

fn render(overlay: &str) -> String {
    Kubectl::on_path().kustomize(overlay)
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

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

/// Rendered objects by `Kind namespace/name`, each once.
fn by_identity(objs: Vec<Value>, what: &str) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for o in objs {
        let id = format!(
            "{} {}/{}",
            kind(&o),
            o["metadata"]["namespace"].as_str().unwrap_or_default(),
            name(&o)
        );
        assert!(!map.contains_key(&id), "{what} renders {id} more than once");
        map.insert(id, o);
    }
    map
}

/// Runs `scripts/validate-crds.py` on `objs`: its report (an `ok KIND NAME` line per
/// object) when every one passes its strict schema, else the `FAIL` lines.
fn validate_custom_resources(objs: &[&Value]) -> Result<String, String> {
    let docs = serde_json::to_string(objs).expect("json");
    try_run(
        Command::new(venv_bin("python")).arg(root().join("scripts/validate-crds.py")),
        Some(docs.as_bytes()),
    )
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

        // Custom resources: strict schemas generated from the upstream CRDs.
        let objs = objects(&yaml);
        for o in &objs {
            assert!(
                CUSTOM_KINDS.contains(&kind(o)) || BUILTIN_KINDS.contains(&kind(o)),
                "{overlay}: {} {} has no schema check",
                kind(o),
                name(o)
            );
        }
        for expected in ["ScaledObject", "TriggerAuthentication", "PodMonitor"] {
            assert!(
                !of_kind(&objs, expected).is_empty(),
                "{overlay}: no {expected} rendered"
            );
        }
        let custom: Vec<&Value> = objs
            .iter()
            .filter(|o| CUSTOM_KINDS.contains(&kind(o)))
            .collect();
        let report = validate_custom_resources(&custom)
            .unwrap_or_else(|e| panic!("{overlay}: custom resources fail their CRD schemas:\n{e}"));
        for o in &custom {
            let line = format!("ok {} {}", kind(o), name(o));
            assert!(
                report.lines().any(|l| l == line),
                "{overlay}: {} {} was not validated:\n{report}",
                kind(o),
                name(o)
            );
        }
    }
}

/// The overlays render with kustomize v5 (a current kubectl) and with kustomize v2.0.3
/// (Debian bookworm's kubectl 1.20, which `make setup` installs on a machine without
/// kubectl), to the same objects.
#[test]
fn every_overlay_renders_the_same_with_kustomize_v5_and_debians_v2() {
    let (current, debian) = (Kubectl::on_path(), Kubectl::debian());
    let (current_version, debian_version) = (current.version(), debian.version());
    if current_version == debian_version {
        eprintln!(
            "note: the kubectl on PATH is Debian's too ({current_version}): kustomize v5 is not exercised"
        );
    }
    for overlay in OVERLAYS {
        let what_current = format!("{} ({current_version})", current.what);
        let what_debian = format!("{} ({debian_version})", debian.what);
        let a = by_identity(objects(&current.kustomize(overlay)), &what_current);
        let b = by_identity(objects(&debian.kustomize(overlay)), &what_debian);
        let only = |x: &BTreeMap<String, Value>, y: &BTreeMap<String, Value>| -> Vec<String> {
            x.keys().filter(|k| !y.contains_key(*k)).cloned().collect()
        };
        assert!(
            only(&a, &b).is_empty() && only(&b, &a).is_empty(),
            "overlays/{overlay}: only {what_current} renders {:?}; only {what_debian} renders {:?}",
            only(&a, &b),
            only(&b, &a)
        );
        for (id, obj) in &a {
            assert!(
                *obj == b[id],
                "overlays/{overlay}: {id} differs\n{what_current}:\n{}\n{what_debian}:\n{}",
                serde_json::to_string_pretty(obj).expect("json"),
                serde_json::to_string_pretty(&b[id]).expect("json")
            );
        }
    }
}

/// The strict schemas bite: misspelt fields, wrong types and unknown kinds are rejected, for
/// the reason given (so the check above cannot pass by checking nothing).
#[test]
fn the_custom_resource_check_rejects_unknown_fields_and_wrong_types() {
    let scaled_object = json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "analysis-worker", "labels": {"app.kubernetes.io/part-of": "logcanary"}},
        "spec": {
            "scaleTargetRef": {"name": "analysis-worker"},
            "minReplicaCount": 1,
            "maxReplicaCount": 10,
            "triggers": [{
                "type": "rabbitmq",
                "metadata": {"queueName": "analysis", "mode": "QueueLength", "value": "100"},
                "authenticationRef": {"name": "logcanary-rabbitmq"}
            }]
        }
    });
    let trigger_auth = json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "logcanary-rabbitmq"},
        "spec": {"secretTargetRef": [{"parameter": "host", "name": "logcanary-secrets", "key": "host"}]}
    });
    let pod_monitor = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "logcanary"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": "logcanary"}},
            "podMetricsEndpoints": [{"port": "admin", "path": "/metrics", "interval": "30s"}]
        }
    });
    let service_monitor = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "ingest-api"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "ingest-api"}},
            "endpoints": [{"port": "admin", "path": "/metrics", "interval": "30s"}]
        }
    });
    let valid = [
        &scaled_object,
        &trigger_auth,
        &pod_monitor,
        &service_monitor,
    ];
    validate_custom_resources(&valid)
        .unwrap_or_else(|e| panic!("the valid custom resources are rejected:\n{e}"));

    let edited = |base: &Value, edit: &dyn Fn(&mut Value)| {
        let mut o = base.clone();
        edit(&mut o);
        o
    };
    let cases = [
        (
            "spec.minReplicas instead of minReplicaCount",
            edited(&scaled_object, &|o| {
                let spec = o["spec"].as_object_mut().expect("spec");
                spec.remove("minReplicaCount");
                spec.insert("minReplicas".into(), json!(1));
            }),
            "$.spec: Additional properties are not allowed ('minReplicas' was unexpected)",
        ),
        (
            "maxReplicaCount as a string",
            edited(&scaled_object, &|o| o["spec"]["maxReplicaCount"] = json!("10")),
            "$.spec.maxReplicaCount: '10' is not of type 'integer'",
        ),
        (
            "a trigger's metadata value as a number",
            edited(&scaled_object, &|o| {
                o["spec"]["triggers"][0]["metadata"]["value"] = json!(100)
            }),
            "$.spec.triggers[0].metadata.value: 100 is not of type 'string'",
        ),
        (
            "a misspelt authenticationRef field",
            edited(&scaled_object, &|o| {
                o["spec"]["triggers"][0]["authenticationRef"] = json!({"nmae": "logcanary-rabbitmq"})
            }),
            "('nmae' was unexpected)",
        ),
        (
            "scaleTargetRef without its name",
            edited(&scaled_object, &|o| o["spec"]["scaleTargetRef"] = json!({})),
            "$.spec.scaleTargetRef: 'name' is a required property",
        ),
        (
            "a misspelt metadata field",
            edited(&scaled_object, &|o| o["metadata"]["lables"] = json!({})),
            "$.metadata: Additional properties are not allowed ('lables' was unexpected)",
        ),
        (
            "another apiVersion",
            edited(&scaled_object, &|o| o["apiVersion"] = json!("keda.sh/v1")),
            "$.apiVersion: 'keda.sh/v1alpha1' was expected",
        ),
        (
            "a misspelt secretTargetRef field",
            edited(&trigger_auth, &|o| {
                o["spec"]["secretTargetRef"][0] =
                    json!({"paramter": "host", "name": "logcanary-secrets", "key": "host"})
            }),
            "('paramter' was unexpected)",
        ),
        (
            "a misspelt podMetricsEndpoints field",
            edited(&pod_monitor, &|o| {
                o["spec"]["podMetricsEndpoints"][0]["intervall"] = json!("30s")
            }),
            "$.spec.podMetricsEndpoints[0]: Additional properties are not allowed ('intervall' was unexpected)",
        ),
        (
            "a ServiceMonitor endpoint with a misspelt field",
            edited(&service_monitor, &|o| o["spec"]["endpoints"][0]["prot"] = json!("admin")),
            "$.spec.endpoints[0]: Additional properties are not allowed ('prot' was unexpected)",
        ),
        (
            "a kind without a schema",
            edited(&scaled_object, &|o| o["kind"] = json!("ScaledJob")),
            "FAIL ScaledJob analysis-worker: no schema for this kind",
        ),
    ];
    for (what, obj, reason) in &cases {
        match validate_custom_resources(&[obj]) {
            Ok(report) => panic!("{what}: accepted by scripts/validate-crds.py:\n{report}"),
            Err(report) => assert!(
                report.contains(reason),
                "{what}: rejected, but not with `{reason}`:\n{report}"
            ),
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
