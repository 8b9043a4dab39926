//! `cargo xtask image`: the agent's container image, built from this
//! machine alone (no base image, no registry): the release binary, the
//! shared libraries it links, the shipped config and the few files glibc
//! reads, in one layer, written as an OCI image layout archive that
//! `docker load`, `podman load`, `skopeo` and `ctr images import` all read.
//! Deterministic: no time stamps, owners or order from the build machine.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

/// Where the archive goes, and the name and tag the DaemonSet uses.
pub const OUT_DIR: &str = "target/image";
pub const NAME: &str = "sentinel";

pub fn archive_name(version: &str) -> String {
    format!("{NAME}-{version}.oci.tar")
}

/// Builds the archive from `bin` and `config`; returns its path.
pub fn build(root: &Path, bin: &Path, config: &Path, version: &str) -> Result<PathBuf> {
    let out = root.join(OUT_DIR);
    let _ = std::fs::remove_dir_all(&out);
    let rootfs = out.join("rootfs");
    let layout = out.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;

    fill_rootfs(&rootfs, bin, config)?;
    let layer_tar = out.join("layer.tar");
    tar(&rootfs, &layer_tar)?;
    let diff_id = sha256(&layer_tar)?;
    let layer = blob_of_command(&blobs, Command::new("gzip").args(["-9nc"]).arg(&layer_tar))?;

    let config_blob = blob(
        &blobs,
        &serde_json::to_vec(&json!({
            "architecture": oci_arch(),
            "os": "linux",
            "config": {
                "Entrypoint": ["/usr/bin/sentinel"],
                "Cmd": ["run", "--config", "/etc/sentinel/sentinel.toml"],
                "Env": ["PATH=/usr/bin"],
                "Labels": {
                    "org.opencontainers.image.title": NAME,
                    "org.opencontainers.image.version": version,
                    "org.opencontainers.image.description":
                        "Sentinel memory guard: predicts and preempts memory exhaustion",
                },
            },
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{diff_id}")] },
            "history": [{ "created_by": "cargo xtask image" }],
        }))?,
    )?;
    let manifest = blob(
        &blobs,
        &serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_blob.digest(),
                "size": config_blob.size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer.digest(),
                "size": layer.size,
            }],
        }))?,
    )?;
    let reference = format!("{NAME}:{version}");
    write_json(
        &layout.join("index.json"),
        &json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest.digest(),
                "size": manifest.size,
                "annotations": {
                    "org.opencontainers.image.ref.name": version,
                    "io.containerd.image.name": format!("docker.io/library/{reference}"),
                },
            }],
        }),
    )?;
    write_json(
        &layout.join("oci-layout"),
        &json!({ "imageLayoutVersion": "1.0.0" }),
    )?;
    // What `docker load` reads beside the OCI index.
    write_json(
        &layout.join("manifest.json"),
        &json!([{
            "Config": format!("blobs/sha256/{}", config_blob.hex),
            "RepoTags": [reference],
            "Layers": [format!("blobs/sha256/{}", layer.hex)],
        }]),
    )?;
    let archive = out.join(archive_name(version));
    tar(&layout, &archive)?;
    for scratch in [&rootfs, &layout] {
        std::fs::remove_dir_all(scratch)?;
    }
    std::fs::remove_file(&layer_tar)?;
    Ok(archive)
}

/// This machine's architecture as OCI names it: the image holds this
/// machine's binary and libraries.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The image's whole filesystem.
fn fill_rootfs(rootfs: &Path, bin: &Path, config: &Path) -> Result<()> {
    // proc, sys and dev: where a runtime mounts them.
    for dir in [
        "usr/bin",
        "etc/sentinel",
        "var/lib/sentinel",
        "run/sentinel",
        "tmp",
        "proc",
        "sys",
        "dev",
    ] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    copy(bin, &rootfs.join("usr/bin/sentinel"))?;
    copy(config, &rootfs.join("etc/sentinel/sentinel.toml"))?;
    for lib in linked_libraries(bin)? {
        let inside = rootfs.join(lib.strip_prefix("/").unwrap_or(&lib));
        std::fs::create_dir_all(inside.parent().expect("a library path has a parent"))?;
        // The file itself, where the binary's loader looks for it, not the
        // host's symlink to it.
        copy(&std::fs::canonicalize(&lib)?, &inside)?;
    }
    // Group names (agent.socket_group) resolve through these; glibc reads
    // files without a plug-in since 2.34.
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/:/usr/bin/sentinel\n",
    )?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(
        rootfs.join("etc/nsswitch.conf"),
        "passwd: files\ngroup: files\n",
    )?;
    // The CAs https:// alert receivers are checked against when
    // alerting.tls.ca_file is unset: this machine's Debian bundle.
    let bundle = Path::new(CA_BUNDLE);
    if bundle.is_file() {
        std::fs::create_dir_all(rootfs.join("etc/ssl/certs"))?;
        copy(bundle, &rootfs.join(CA_BUNDLE.trim_start_matches('/')))?;
    } else {
        eprintln!(
            "image: no {CA_BUNDLE} here (package ca-certificates): https:// receivers in the image need alerting.tls.ca_file"
        );
    }
    Ok(())
}

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Every shared object `bin` loads at start, the dynamic loader included,
/// as `ldd` resolves them on this machine.
fn linked_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("ldd (from libc-bin)")?;
    ensure!(
        out.status.success(),
        "ldd {}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let libs: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    if libs
        .iter()
        .all(|l| !l.to_string_lossy().contains("ld-linux"))
    {
        bail!("ldd named no dynamic loader for {}:\n{text}", bin.display());
    }
    Ok(libs)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// A tar of `dir`'s contents with nothing of this machine in it: sorted,
/// owned by root, time stamp zero.
fn tar(dir: &Path, out: &Path) -> Result<()> {
    crate::run(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--format=posix",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                "-cf",
            ])
            .arg(out)
            .arg("-C")
            .arg(dir)
            .arg("."),
    )
}

fn sha256(file: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(file).output()?;
    ensure!(out.status.success(), "sha256sum {}", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// A content-addressed file of the layout.
struct Blob {
    hex: String,
    size: u64,
}

impl Blob {
    fn digest(&self) -> String {
        format!("sha256:{}", self.hex)
    }
}

/// Writes `bytes` under their own digest.
fn blob(blobs: &Path, bytes: &[u8]) -> Result<Blob> {
    let scratch = blobs.join("incoming");
    std::fs::write(&scratch, bytes)?;
    let hex = sha256(&scratch)?;
    std::fs::rename(&scratch, blobs.join(&hex))?;
    Ok(Blob {
        hex,
        size: bytes.len() as u64,
    })
}

/// A blob of what `cmd` prints.
fn blob_of_command(blobs: &Path, cmd: &mut Command) -> Result<Blob> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    blob(blobs, &out.stdout)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec(value)?)?;
    Ok(())
}
