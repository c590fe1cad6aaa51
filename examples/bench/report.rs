//! Statistics, the printed tables and the JSON document.

use std::time::Duration;

use serde_json::{Value, json};

/// Percentiles of a set of latencies.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
}

impl Stats {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self { p50: at(0.50), p99: at(0.99) }
    }

    pub fn json(&self) -> Value {
        json!({ "p50_us": self.p50.as_micros() as u64, "p99_us": self.p99.as_micros() as u64 })
    }
}

/// Every benchmark's results, as one JSON document.
#[derive(Default)]
pub struct Report {
    results: Vec<Value>,
}

impl Report {
    /// Adds one benchmark's result (an object with at least `bench` and `servers`).
    pub fn add(&mut self, result: Value) {
        self.results.push(result);
    }

    pub fn write(&self, path: &str) -> std::io::Result<()> {
        let document = serde_json::to_string_pretty(&json!({ "results": self.results }))?;
        std::fs::write(path, document + "\n")?;
        println!("\nwrote {path}");
        Ok(())
    }
}

/// A table's title line.
pub fn title(text: &str) {
    println!("\n{text}");
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

pub fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}x", a / b)
}

/// Microseconds from a peer's comma-separated answer.
pub fn durations_us(numbers: &str) -> Vec<Duration> {
    numbers.split(',').filter(|n| !n.is_empty()).map(|n| Duration::from_micros(n.parse().expect("a number"))).collect()
}

/// The median of some values.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
