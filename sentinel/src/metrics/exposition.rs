//! The Prometheus text exposition format (version 0.0.4): families with
//! HELP and TYPE, escaped label values, base units.

use std::fmt::Write;

pub struct Exposition {
    out: String,
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[derive(Clone, Copy)]
pub enum Type {
    Gauge,
    Counter,
}

impl Exposition {
    pub fn new() -> Self {
        Self { out: String::new() }
    }

    /// Starts a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Type, help: &str) -> &mut Self {
        let kind = match kind {
            Type::Gauge => "gauge",
            Type::Counter => "counter",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Type, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_and_labels_are_escaped() {
        let mut e = Exposition::new();
        e.family("sentinel_x_total", Type::Counter, "Things.\nCounted.")
            .sample("sentinel_x_total", &[("comm", "a\"b\\c\nd")], 3.0)
            .sample("sentinel_x_total", &[], 0.5);
        e.single("sentinel_y_bytes", Type::Gauge, "Y.", f64::INFINITY);
        assert_eq!(
            e.finish(),
            "# HELP sentinel_x_total Things. Counted.\n# TYPE sentinel_x_total counter\n\
             sentinel_x_total{comm=\"a\\\"b\\\\c\\nd\"} 3\nsentinel_x_total 0.5\n\
             # HELP sentinel_y_bytes Y.\n# TYPE sentinel_y_bytes gauge\nsentinel_y_bytes +Inf\n"
        );
    }
}
