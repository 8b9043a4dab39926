//! What a cgroup path says about the container and Kubernetes pod a
//! process runs in, for alert labels. Covers the cgroupfs and systemd
//! layouts of Docker, containerd, CRI-O and the kubelet.

/// The 64-hex container ID in the last path component that holds one.
pub fn container_id(cgroup: &str) -> Option<&str> {
    cgroup.rsplit('/').find_map(|part| {
        let part = part.strip_suffix(".scope").unwrap_or(part);
        // `docker-ID`, `cri-containerd-ID`, `crio-ID`, `libpod-ID`, or a bare ID.
        let id = part.rsplit(['-', ':']).next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    })
}

/// The pod UID from `pod<uid>` (cgroupfs) or `...-pod<uid_with_underscores>.slice`
/// (systemd, which cannot have `-` in a unit name part).
pub fn pod_uid(cgroup: &str) -> Option<String> {
    cgroup.split('/').find_map(|part| {
        let part = part.strip_suffix(".slice").unwrap_or(part);
        let i = part.rfind("pod")?;
        let before = &part[..i];
        if !(before.is_empty() || before.ends_with('-')) {
            return None;
        }
        let uid = part[i + 3..].replace('_', "-");
        let is_uid = uid.len() == 36
            && uid.bytes().enumerate().all(|(k, b)| {
                matches!(k, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
            });
        is_uid.then_some(uid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f9a1c0de7b2a4f6c8e0d2b4a6f8c0e2d4b6a8f0c2e4d6b8a0f2c4e6d8b0a2f4";
    const UID: &str = "0d6d5b55-1b3b-4c2e-9b6a-6a2f7b0c9e11";

    #[test]
    fn container_ids_from_each_runtime_layout() {
        for path in [
            format!("/docker/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
                UID.replace('-', "_")
            ),
            format!(
                "/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
                UID.replace('-', "_")
            ),
            format!("/machine.slice/libpod-{ID}.scope/container"),
        ] {
            assert_eq!(container_id(&path), Some(ID), "{path}");
        }
        assert_eq!(
            container_id("/user.slice/user-1000.slice/session-2.scope"),
            None
        );
        assert_eq!(container_id("/"), None);
    }

    #[test]
    fn pod_uids_from_cgroupfs_and_systemd_layouts() {
        assert_eq!(
            pod_uid(&format!("/kubepods/besteffort/pod{UID}/{ID}")).as_deref(),
            Some(UID)
        );
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid(&systemd).as_deref(), Some(UID));
        assert_eq!(pod_uid(&format!("/docker/{ID}")), None);
        assert_eq!(pod_uid("/system.slice/podman.service"), None);
        assert_eq!(pod_uid("/kubepods/podnot-a-uid"), None);
    }
}
