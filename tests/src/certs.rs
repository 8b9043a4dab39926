//! Certificates made with openssl for the TLS tests: a CA, and leaves it
//! signs with the extensions each test needs.

use std::process::Command;

/// Runs openssl (installed by `cargo xtask setup`) in `dir`, failing the
/// test with its output.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    crate::stdout_of(Command::new("openssl").args(args).current_dir(dir));
}

/// A new P-256 key, unencrypted, for `openssl req`.
const EC_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A certificate `name`.pem/.key signed by `ca`, with `ext` (subjectAltName
/// and extended key usage).
pub fn issue(dir: &std::path::Path, ca: &str, name: &str, ext: &str) {
    let (key, csr, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            &["req"][..],
            EC_KEY,
            &["-keyout", &key, "-out", &csr, "-subj", &subject],
        ]
        .concat(),
    );
    let (ca_pem, ca_key, pem) = (
        format!("{ca}.pem"),
        format!("{ca}.key"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ],
    );
}

/// A self-signed CA `name`.pem/.key.
pub fn new_ca(dir: &std::path::Path, name: &str) {
    let (key, pem, subject) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            EC_KEY,
            &[
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
}
