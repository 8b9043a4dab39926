//! Project tasks: `cargo xtask setup|run|test|bench|codegen`.
//!
//! `setup` is idempotent: it checks each requirement and installs only what
//! is missing, so `run` and `test` call it first and a fresh machine needs
//! nothing but cargo.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

mod deb;
mod image;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Sentinel project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build needs (Debian packages, bpf-linker, the Debian
    /// Rust toolchain for the eBPF target). Does nothing when all is present.
    Setup,
    /// Set up, build, and run the agent (extra arguments go to `sentinel run`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run every test (privileged tests need root).
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the benchmarks; prints the figures.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz the config parser and the kernel-record handling (cargo fuzz,
    /// sentinel/fuzz/) for `--seconds` each; `test` runs a short budget.
    Fuzz {
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// Targets to run (default: all of them).
        targets: Vec<String>,
    },
    /// Regenerate the gRPC code from sentinel/api/proto/ into sentinel/api/src/generated.
    Codegen,
    /// Regenerate deploy/kubernetes/prometheusrule.yaml from the Prometheus
    /// rules, and the DaemonSet's ConfigMap from deploy/sentinel.toml.
    Manifests,
    /// Build the Debian package (cargo-deb) into target/debian/.
    Deb,
    /// Build the container image (OCI archive, no registry, no base image)
    /// into target/image/sentinel-VERSION.oci.tar.
    Image,
    /// Build the Python client's wheel (sentinel/python) into target/wheels/.
    Wheel,
}

const APT_PACKAGES: &[&str] = &[
    // bpf-linker links against LLVM 22, the LLVM of Debian's rustc.
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libxml2-dev",
    "libffi-dev",
    // Debian's rustc ships a prebuilt core for bpfel-unknown-none.
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo_home_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Debian packages only the tests use.
const TEST_APT_PACKAGES: &[&str] = &[
    // Makes the certificates of the mutual-TLS test.
    "openssl",
    // The real monitoring stack the alerting tests wire the agent to, and
    // promtool for the rules' unit tests.
    "prometheus",
    "prometheus-alertmanager",
    // Checks the package as Debian would (tests/tests/package.rs).
    "lintian",
    // The kernel's system call numbers, for the unit's syscall filter test.
    "linux-libc-dev",
];

/// Installs whichever of `packages` are missing.
fn apt_install(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("setup: installing Debian packages: {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    Ok(())
}

fn setup() -> Result<()> {
    apt_install(APT_PACKAGES)?;

    let linker = cargo_home_bin().join("bpf-linker");
    let linker_ok =
        output(Command::new(&linker).arg("--version")).is_some_and(|v| v.contains("bpf-linker"));
    if !linker_ok {
        eprintln!("setup: building bpf-linker against LLVM 22 (about 2 minutes)");
        run(Command::new("cargo")
            .args(["install", "--locked", "bpf-linker", "--version", "0.13.0"])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22"))?;
    }

    let toolchains = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("debian")) {
        eprintln!("setup: linking Debian's rustc as the `debian` rustup toolchain");
        run(Command::new("rustup").args(["toolchain", "link", "debian", "/usr"]))?;
    }
    let components = output(Command::new("rustup").args(["component", "list", "--installed"]))
        .unwrap_or_default();
    for c in ["rustfmt", "clippy"] {
        if !components.lines().any(|l| l.starts_with(c)) {
            run(Command::new("rustup").args(["component", "add", c]))?;
        }
    }
    eprintln!("setup: everything is in place");
    Ok(())
}

/// Where the tests' third-party Python gRPC client finds grpcio: outside
/// /root, so that the client can run as an unprivileged user.
const TEST_PYTHON_DEPS: &str = "/opt/sentinel-test/python";

/// Pinned: it bundles the schemas of each Kubernetes version it knows.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";

/// Installs grpcio and grpcio-tools for the third-party client test, once.
/// They go to a world-readable folder (pip --target) for the system's
/// CPython of the same minor version to import.
fn test_setup() -> Result<()> {
    apt_install(TEST_APT_PACKAGES)?;
    deb::deb_setup()?;
    // The client tests (grpcio, its generator), the Python client's
    // pytest plugin under pytest-xdist, and the Kubernetes API schemas the
    // manifests are checked against (tests/tests/deploy.rs).
    python_deps(&[
        "grpcio",
        GRPCIO_TOOLS,
        "pytest",
        "pytest-xdist",
        KUBERNETES_VALIDATE,
    ])
}

/// Installs `packages` (from the package index) where /usr/bin/python3
/// finds them with PYTHONPATH=TEST_PYTHON_DEPS, unless it already imports
/// them all.
fn python_deps(packages: &[&str]) -> Result<()> {
    let modules: Vec<String> = packages
        .iter()
        .map(|p| {
            let name = p.split("==").next().unwrap_or(p);
            match name {
                "grpcio" => "grpc".to_string(),
                "grpcio-tools" => "grpc_tools.protoc".to_string(),
                "pytest-xdist" => "xdist".to_string(),
                other => other.replace('-', "_"),
            }
        })
        .collect();
    let present = Command::new("/usr/bin/python3")
        .args(["-c", &format!("import {}", modules.join(", "))])
        .env("PYTHONPATH", TEST_PYTHON_DEPS)
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!(
        "setup: installing {} for /usr/bin/python3",
        packages.join(" ")
    );
    // The pip that goes with /usr/bin/python3's minor version: the
    // machine's own python3 (pyenv) is the same CPython 3.11.
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(TEST_PYTHON_DEPS)
        .args(packages))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn codegen() -> Result<()> {
    let root = root();
    let out = root.join("sentinel/api/src/generated");
    std::fs::create_dir_all(&out)?;
    let fds = protox::compile(
        ["sentinel/v1/sentinel.proto"],
        [root.join("sentinel/api/proto")],
    )
    .context("compiling sentinel/api/proto/sentinel/v1/sentinel.proto")?;
    std::fs::write(
        out.join("sentinel_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out)
        .compile_fds(fds)
        .context("generating Rust code")?;
    run(Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(out.join("sentinel.v1.rs")))?;
    eprintln!("codegen: wrote {}", out.display());
    python_codegen()
}

/// The Python client's stubs (sentinel/python), from the same proto, by a
/// pinned grpcio-tools; imports made relative so they live inside the
/// package.
fn python_codegen() -> Result<()> {
    python_deps(&[GRPCIO_TOOLS])?;
    let root = root();
    let out = root.join(PYTHON_GEN);
    let tmp = root.join("target/python-gen");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    run(Command::new("/usr/bin/python3")
        .env("PYTHONPATH", TEST_PYTHON_DEPS)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(root.join("sentinel/api/proto"))
        .arg(format!("--python_out={}", tmp.display()))
        .arg(format!("--grpc_python_out={}", tmp.display()))
        .arg(format!("--pyi_out={}", tmp.display()))
        .arg("sentinel/v1/sentinel.proto"))?;
    let v1 = out.join("sentinel/v1");
    std::fs::create_dir_all(&v1)?;
    let marker =
        "\"\"\"Generated by `cargo xtask codegen` from sentinel/api/proto; do not edit.\"\"\"\n";
    for dir in [out.clone(), out.join("sentinel"), v1.clone()] {
        std::fs::write(dir.join("__init__.py"), marker)?;
    }
    for file in [
        "sentinel_pb2.py",
        "sentinel_pb2.pyi",
        "sentinel_pb2_grpc.py",
    ] {
        let text = std::fs::read_to_string(tmp.join("sentinel/v1").join(file))?;
        let text = text.replace(
            "from sentinel.v1 import sentinel_pb2 as",
            "from . import sentinel_pb2 as",
        );
        std::fs::write(v1.join(file), text)?;
    }
    eprintln!("codegen: wrote {}", v1.display());
    Ok(())
}

/// Where the Python client's generated stubs live.
const PYTHON_GEN: &str = "sentinel/python/src/sentinel_client/_gen";
/// The generator, pinned so that the stubs are the same on every machine
/// (its protoc sets the client's minimum protobuf, in pyproject.toml).
const GRPCIO_TOOLS: &str = "grpcio-tools==1.85.1";

/// Builds the Python client's wheel into target/wheels/.
fn wheel() -> Result<std::path::PathBuf> {
    let root = root();
    let out = root.join("target/wheels");
    std::fs::create_dir_all(&out)?;
    // The machine's python3 (pyenv) has pip; the wheel is pure Python.
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
        ])
        .arg(&out)
        .arg(root.join("sentinel/python")))?;
    let version = std::fs::read_to_string(root.join("sentinel/python/pyproject.toml"))?
        .lines()
        .find_map(|l| {
            l.strip_prefix("version = \"")?
                .strip_suffix('"')
                .map(str::to_string)
        })
        .context("the version in sentinel/python/pyproject.toml")?;
    // setuptools builds in place: leave the source tree as it was (an
    // egg-info there would register the plugin twice in the tests).
    let _ = std::fs::remove_dir_all(root.join("sentinel/python/build"));
    let _ = std::fs::remove_dir_all(root.join("sentinel/python/src/sentinel_client.egg-info"));
    let whl = out.join(format!("sentinel_client-{version}-py3-none-any.whl"));
    if !whl.exists() {
        bail!("pip wheel did not write {}", whl.display());
    }
    eprintln!("wheel: {}", whl.display());
    Ok(whl)
}

const RULES: &str = "deploy/prometheus/sentinel-rules.yml";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/prometheusrule.yaml";

/// `lines`, each indented by `by` (empty ones left empty), as YAML block
/// text.
fn indented<'a>(lines: impl Iterator<Item = &'a str>, by: &str) -> String {
    lines
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("{by}{l}\n")
            }
        })
        .collect()
}

/// The PrometheusRule resource carrying the shipped rules file unchanged,
/// so the two cannot drift (a test compares them).
fn prometheus_rule(rules: &str) -> String {
    let body = indented(
        rules
            .lines()
            .skip_while(|l| l.starts_with('#') || l.trim().is_empty()),
        "  ",
    );
    format!(
        "# Generated by `cargo xtask manifests` from {RULES}; edit that file instead.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: sentinel\n  namespace: sentinel\n  labels:\n    app.kubernetes.io/name: sentinel\n\
         spec:\n{body}"
    )
}

const SHIPPED_CONFIG: &str = "deploy/sentinel.toml";
const DAEMONSET: &str = "deploy/kubernetes/daemonset.yaml";

/// The DaemonSet manifest with its ConfigMap's `sentinel.toml` replaced by
/// the shipped config, metrics listening on every address (Prometheus
/// scrapes the pod IP). Everything else in the manifest is kept.
fn daemonset(shipped: &str, manifest: &str) -> Result<String> {
    const KEY: &str = "  sentinel.toml: |\n";
    let start = manifest
        .find(KEY)
        .context("the ConfigMap's sentinel.toml")?
        + KEY.len();
    let end = start
        + manifest[start..]
            .find("\n---\n")
            .context("the end of the ConfigMap")?
        + 1;
    let shipped = shipped.replace("listen = \"127.0.0.1:9777\"", "listen = \"0.0.0.0:9777\"");
    let body = indented(shipped.lines(), "    ");
    Ok(format!("{}{body}{}", &manifest[..start], &manifest[end..]))
}

fn manifests() -> Result<()> {
    let rules = std::fs::read_to_string(root().join(RULES))?;
    let out = root().join(PROMETHEUS_RULE);
    std::fs::write(&out, prometheus_rule(&rules))?;
    eprintln!("manifests: wrote {}", out.display());
    let shipped = std::fs::read_to_string(root().join(SHIPPED_CONFIG))?;
    let out = root().join(DAEMONSET);
    let manifest = std::fs::read_to_string(&out)?;
    std::fs::write(&out, daemonset(&shipped, &manifest)?)?;
    eprintln!("manifests: wrote {}", out.display());
    Ok(())
}

/// The container image of the release binary and the shipped config.
fn image() -> Result<PathBuf> {
    let archive = image::build(
        &root(),
        &root().join("target/release/sentinel"),
        &root().join(SHIPPED_CONFIG),
        env!("CARGO_PKG_VERSION"),
    )?;
    eprintln!("image: wrote {}", archive.display());
    Ok(archive)
}

/// The fuzz targets, and seed inputs for each beside the corpus the runs
/// grow (which stays under target/, not in git).
const FUZZ_TARGETS: &[(&str, &[&str])] = &[("config", &["deploy/sentinel.toml"]), ("events", &[])];

/// Seconds each target is fuzzed by `cargo xtask test` (and so by CI).
const CI_FUZZ_SECONDS: u64 = 20;

fn fuzz_setup() -> Result<()> {
    let bin = cargo_home_bin().join("cargo-fuzz");
    if output(Command::new(&bin).arg("--version")).is_none() {
        eprintln!("setup: installing cargo-fuzz");
        run(Command::new("cargo").args([
            "install",
            "--locked",
            "cargo-fuzz",
            "--version",
            "0.13.1",
        ]))?;
    }
    Ok(())
}

/// Runs each of `targets` (all when empty) for `seconds`; a crash fails
/// the run and leaves its input under sentinel/fuzz/artifacts/.
fn fuzz(seconds: u64, targets: &[String]) -> Result<()> {
    fuzz_setup()?;
    let root = root();
    for (name, seeds) in FUZZ_TARGETS {
        if !targets.is_empty() && !targets.iter().any(|t| t == name) {
            continue;
        }
        let corpus = root.join("target/fuzz-corpus").join(name);
        std::fs::create_dir_all(&corpus)?;
        let seeds_dir = root.join("target/fuzz-seeds").join(name);
        std::fs::create_dir_all(&seeds_dir)?;
        for seed in *seeds {
            let from = root.join(seed);
            let to = seeds_dir.join(from.file_name().context("a seed file name")?);
            std::fs::copy(&from, &to).with_context(|| format!("copy seed {seed}"))?;
        }
        eprintln!("fuzz: {name} for {seconds} s");
        run(cargo()
            .current_dir(root.join("sentinel"))
            // cargo fuzz passes nightly flags; the stable toolchain takes
            // them this way.
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--sanitizer", "none", "--debug-assertions"])
            .arg("--target-dir")
            .arg(root.join("target/fuzz"))
            .arg(name)
            .arg(&corpus)
            .arg(&seeds_dir)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1"))
        .with_context(|| {
            format!("fuzz target `{name}` failed (a crash leaves its input under sentinel/fuzz/artifacts/{name}/)")
        })?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Codegen => codegen(),
        Cmd::Wheel => wheel().map(|_| ()),
        Cmd::Fuzz { seconds, targets } => fuzz(seconds, &targets),
        Cmd::Manifests => manifests(),
        Cmd::Deb => {
            setup()?;
            deb::deb_setup()?;
            deb::deb(&[])
        }
        Cmd::Image => {
            setup()?;
            run(cargo().args(["build", "--release", "-p", "sentinel"]))?;
            image().map(|_| ())
        }
        Cmd::Run { args } => {
            setup()?;
            run(cargo().args(["build", "--release", "-p", "sentinel"]))?;
            let bin = root().join("target/release/sentinel");
            let mut cmd = Command::new(bin);
            cmd.arg("run").args(args);
            run(&mut cmd)
        }
        Cmd::Test { args } => {
            setup()?;
            test_setup()?;
            // The end-to-end tests drive the real binaries.
            run(cargo().args(["build", "-p", "sentinel", "-p", "sentinel-tests", "--bins"]))?;
            // The package test installs what a release build packages.
            deb::deb(&["-o", "target/debian/"])?;
            // The image test loads and runs what the release build makes.
            image()?;
            // The Python client's tests install its wheel.
            wheel()?;
            run(cargo().args(["test", "--workspace"]).args(args))?;
            fuzz(CI_FUZZ_SECONDS, &[])
        }
        Cmd::Bench { args } => {
            setup()?;
            run(cargo().args([
                "build",
                "--release",
                "-p",
                "sentinel",
                "-p",
                "sentinel-tests",
                "--bins",
            ]))?;
            let mut cmd = Command::new(root().join("target/release/sentinel-bench"));
            cmd.args(args);
            run(&mut cmd)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_rule_manifest_carries_the_shipped_rules() {
        let rules = std::fs::read_to_string(root().join(RULES)).unwrap();
        let committed = std::fs::read_to_string(root().join(PROMETHEUS_RULE)).unwrap();
        assert!(
            committed == prometheus_rule(&rules),
            "{PROMETHEUS_RULE} is stale: run `cargo xtask manifests`"
        );
    }

    /// The DaemonSet runs the image `cargo xtask image` builds, by the name
    /// and tag that image carries.
    #[test]
    fn the_daemonset_names_the_image_the_xtask_builds() {
        let manifest = std::fs::read_to_string(root().join(DAEMONSET)).unwrap();
        let images: Vec<&str> = manifest
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .collect();
        let built = format!("{}:{}", image::NAME, env!("CARGO_PKG_VERSION"));
        assert_eq!(images, [built.as_str()]);
        assert!(manifest.contains(&image::archive_name(env!("CARGO_PKG_VERSION"))));
    }

    /// The Python client is versioned with the agent whose proto its stubs
    /// come from.
    #[test]
    fn the_python_client_has_the_agents_version() {
        let version_in = |file: &str| {
            std::fs::read_to_string(root().join(file))
                .unwrap()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("version = \"")?
                        .strip_suffix('"')
                        .map(str::to_string)
                })
                .unwrap()
        };
        assert_eq!(
            version_in("sentinel/python/pyproject.toml"),
            version_in("Cargo.toml"),
            "bump sentinel/python/pyproject.toml with the workspace version"
        );
    }

    #[test]
    fn the_daemonset_carries_the_shipped_config() {
        let shipped = std::fs::read_to_string(root().join(SHIPPED_CONFIG)).unwrap();
        let committed = std::fs::read_to_string(root().join(DAEMONSET)).unwrap();
        assert!(
            committed == daemonset(&shipped, &committed).unwrap(),
            "{DAEMONSET} is stale: run `cargo xtask manifests`"
        );
    }
}
