//! Sentinel, the host agent: predicts which process will exhaust memory
//! and stops it first.
//!
//! The decisions are `sentinel-core`'s (pure, behind its host port); the
//! API's messages and client are `sentinel-api`'s. Here, dependencies point
//! one way: `collector`, `actuator`, `probes` and `journal` touch the
//! system; `host` is the engine's port made of them; `service` owns the
//! engine and offers named operations; `api`, `alert` and `metrics` serve
//! those; `agent` wires everything; `cli` is the command line.

pub mod actuator;
pub mod agent;
pub mod alert;
pub mod api;
pub mod cli;
pub mod collector;
pub mod host;
pub mod journal;
pub mod metrics;
pub mod probes;
pub mod relay;
pub mod service;

/// Dependencies point one way: the core knows nothing of the agent (a crate
/// boundary makes that impossible), and here the layers below the wiring
/// never reach up. A `use crate::agent` in the API, say, fails this test.
#[cfg(test)]
mod layering {
    /// Each layer, and the modules it must not name.
    const FORBIDDEN: &[(&str, &[&str])] = &[
        (
            "collector",
            &["agent", "api", "alert", "metrics", "service", "host", "cli"],
        ),
        (
            "actuator",
            &["agent", "api", "alert", "metrics", "service", "host", "cli"],
        ),
        (
            "probes",
            &["agent", "api", "alert", "metrics", "service", "host", "cli"],
        ),
        (
            "journal",
            &["agent", "api", "alert", "metrics", "service", "host", "cli"],
        ),
        (
            "host.rs",
            &["agent", "api", "alert", "metrics", "service", "cli"],
        ),
        (
            "relay",
            &["agent", "api", "alert", "metrics", "service", "host", "cli"],
        ),
        ("service", &["agent", "api", "alert", "metrics", "cli"]),
        ("api", &["agent", "alert", "metrics", "cli"]),
        ("alert", &["agent", "api", "metrics", "cli"]),
        ("metrics", &["agent", "api", "cli"]),
        ("agent", &["cli"]),
    ];

    fn sources(path: &std::path::Path, out: &mut Vec<(String, String)>) {
        if path.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                sources(&e.unwrap().path(), out);
            }
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }

    /// The top-level modules a source names as `crate::NAME`, also inside
    /// `use crate::{a::x, b}` groups. Comments are skipped.
    fn named(text: &str) -> Vec<String> {
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let ident = |s: &str| -> String {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        let mut out = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let Some(group) = rest.strip_prefix('{') else {
                out.push(ident(rest));
                continue;
            };
            // Names that start a top-level item of the group.
            let (mut depth, mut start) = (0, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        out.push(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        }
        out
    }

    #[test]
    fn the_parser_sees_grouped_and_plain_paths() {
        let n = named(
            "use crate::{\n    agent::Shared,\n    config::{A, B},\n};\nlet x = crate::api::MAX;\n// crate::cli::x\n",
        );
        assert_eq!(n, ["agent", "config", "api"]);
    }

    #[test]
    fn layers_below_the_wiring_never_name_the_layers_above() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut bad = Vec::new();
        for (layer, forbidden) in FORBIDDEN {
            let mut files = Vec::new();
            sources(&src.join(layer), &mut files);
            assert!(!files.is_empty(), "no sources for {layer}");
            for (file, text) in files {
                for m in named(&text) {
                    if forbidden.contains(&m.as_str()) {
                        bad.push(format!("{file} names crate::{m}"));
                    }
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }
}
