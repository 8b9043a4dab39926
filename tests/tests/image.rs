//! The container image `cargo xtask test` builds (`cargo xtask image`):
//! a well-formed OCI archive whose blobs are what their names say, with
//! the entry point the DaemonSet relies on; and, unpacked, a root
//! filesystem in which the agent really runs: with the host's /proc and
//! /sys bound in, as the privileged DaemonSet pod has them, it loads its
//! probes and answers on its socket. No container runtime is installed
//! here, so the last part is chroot in a private mount namespace.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use sentinel_tests::{privileged, sentinel_bin, serial, stdout_of, tempdir};

fn the_archive() -> Option<PathBuf> {
    let name = format!("sentinel-{}.oci.tar", env!("CARGO_PKG_VERSION"));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/image")
        .join(name);
    path.exists().then_some(path)
}

fn sh(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&stdout_of(cmd)).into_owned()
}

fn sha256(file: &Path) -> String {
    sh(Command::new("sha256sum").arg(file))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn json(file: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The blob a descriptor names, checked against its digest and size.
fn blob(layout: &Path, descriptor: &serde_json::Value) -> PathBuf {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = layout.join("blobs/sha256").join(hex);
    assert_eq!(sha256(&path), hex, "{digest} holds other bytes");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        descriptor["size"].as_u64().unwrap(),
        "{digest} has another size"
    );
    path
}

/// The unpacked archive, and the root filesystem of its one layer.
fn unpack(archive: &Path, dir: &Path) -> (PathBuf, serde_json::Value) {
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&layout));
    assert_eq!(
        json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        env!("CARGO_PKG_VERSION")
    );
    let manifest = json(&blob(&layout, &manifests[0]));
    let config = json(&blob(&layout, &manifest["config"]));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer = blob(&layout, &layers[0]);
    // The config's diff_id is the digest of the layer uncompressed.
    let tar = dir.join("layer.tar");
    std::fs::write(&tar, stdout_of(Command::new("gzip").arg("-dc").arg(&layer))).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256(&tar))
    );
    // docker load's own index names the same blobs and the tag.
    let docker = json(&layout.join("manifest.json"));
    assert_eq!(
        docker[0]["RepoTags"][0],
        format!("sentinel:{}", env!("CARGO_PKG_VERSION"))
    );
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    sh(Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&rootfs));
    (rootfs, config)
}

#[test]
fn the_image_is_a_valid_archive_and_the_agent_runs_in_it() {
    if !privileged("the_image_is_a_valid_archive") {
        return;
    }
    let _serial = serial();
    let Some(archive) = the_archive() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no image in target/image: `cargo xtask test` builds it (cargo xtask image)"
        );
        eprintln!("SKIP: no image in target/image; run `cargo xtask image` first");
        return;
    };
    let dir = tempdir::Dir::new("image");
    let (rootfs, config) = unpack(&archive, &dir.0);
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/bin/sentinel");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["run", "--config", "/etc/sentinel/sentinel.toml"])
    );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(config["architecture"], arch, "this machine's binary inside");

    // Only what is in the image: its own loader and libraries.
    let in_image = |args: &[&str]| {
        sh(Command::new("chroot")
            .arg(&rootfs)
            .arg("/usr/bin/sentinel")
            .args(args))
    };
    let version = in_image(&["--version"]);
    assert_eq!(
        version.trim(),
        format!("sentinel {}", env!("CARGO_PKG_VERSION"))
    );
    in_image(&["policy", "check", "/etc/sentinel/sentinel.toml"]);

    // The agent itself, as the DaemonSet's privileged pod runs it (host
    // /proc and /sys, its own /run), scoped to this test: a config with
    // the tests' host scope, nothing of the machine's to act on.
    let config = format!(
        "[agent]\nsocket = \"/run/sentinel/test.sock\"\njournal = \"/var/lib/sentinel/journal.redb\"\n[metrics]\nenabled = false\n{}",
        sentinel_tests::TEST_HOST
    );
    std::fs::write(rootfs.join("tmp/agent.toml"), config).unwrap();
    let root = rootfs.display();
    let script = format!(
        "set -e; mount --rbind /proc {root}/proc; mount --rbind /sys {root}/sys; exec chroot {root} /usr/bin/sentinel run --config /tmp/agent.toml"
    );
    let log = dir.0.join("agent.log");
    let mut agent = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let socket = rootfs.join("run/sentinel/test.sock");
    let up = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    let status = Command::new(sentinel_bin())
        .arg("--socket")
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    // SAFETY: our own child (sh exec'd chroot, which exec'd the agent).
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(up, "the agent in the image did not come up:\n{log}");
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("mode ebpf"),
        "the agent in the image runs without its probes:\n{status}\n{log}"
    );
}
