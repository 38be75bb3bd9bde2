//! Times every case of the catalogue on one backend and prints one table (and JSON), with
//! ratios to a PyTorch baseline measured by `reference/torch_baseline.py` on the same
//! machine:
//!
//! ```sh
//! python3 benches/reference/torch_baseline.py --json torch.json
//! cargo run --release -p benches --bin bench -- --backend webgpu --compare torch.json --json ours.json
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use benches::{Clock, Scale, Work, catalogue, measure_by, open, throughput};
use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "Benchmark one backend; compare with a PyTorch baseline")]
struct Args {
    /// `cpu`, `fast-cpu` or `webgpu`.
    #[arg(long, default_value = "webgpu")]
    backend: String,
    /// Adapter name or backend substring (webgpu), e.g. `nvidia` or `llvmpipe`.
    #[arg(long)]
    adapter: Option<String>,
    /// Only cases whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// `full`, `small` or `auto` (full on hardware GPUs).
    #[arg(long, default_value = "auto")]
    scale: String,
    /// Milliseconds to spend per measurement batch.
    #[arg(long, default_value_t = 200)]
    target_ms: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<String>,
    /// A JSON file of PyTorch times per case (from torch_baseline.py) to compare with.
    #[arg(long)]
    compare: Option<String>,
    /// Time only the host's part of each run (recording and submitting; the wait for the
    /// device comes after the clock stops): where it is close to the full time, the host
    /// sets the pace.
    #[arg(long)]
    host_time: bool,
}

#[derive(Serialize, Deserialize)]
struct Row {
    name: String,
    group: String,
    seconds: Option<f64>,
    throughput: Option<f64>,
    unit: String,
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    backend: String,
    rows: Vec<Row>,
}

fn main() {
    let args = Args::parse();
    let opened = match open(&args.backend, args.adapter.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: cannot open {}: {e}", args.backend);
            std::process::exit(2);
        }
    };
    let b = opened.backend.as_ref();
    let scale = match args.scale.as_str() {
        "full" => Scale::Full,
        "small" => Scale::Small,
        _ => opened.scale,
    };
    let torch: BTreeMap<String, f64> = args
        .compare
        .as_ref()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("--compare {p}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("--compare {p}: {e}"))
        })
        .unwrap_or_default();
    println!("backend: {}   scale: {scale:?}", b.name());
    println!(
        "{:<42} {:>12} {:>14} {:>12} {:>10}",
        "case", "time", "throughput", "torch time", "ours/torch"
    );
    let mut rows = Vec::new();
    for case in catalogue(scale) {
        if !args.only.is_empty() && !args.only.iter().any(|o| case.name.contains(o.as_str())) {
            continue;
        }
        let unit = match case.work {
            Work::Flops(_) => "GFLOP/s",
            Work::Bytes(_) => "GB/s",
            Work::Latency => "",
        };
        let result = case.prepare(b).and_then(|p| {
            let clock = if args.host_time {
                Clock::Host
            } else {
                Clock::Completion
            };
            let t = measure_by(b, &p, Duration::from_millis(args.target_ms), 3, clock);
            p.free(b);
            t
        });
        let (seconds, tput, error) = match result {
            Ok(t) => (Some(t), throughput(case.work, t), None),
            Err(e) => (None, None, Some(e.to_string())),
        };
        let torch_t = torch.get(&case.name).copied();
        let ratio = match (seconds, torch_t) {
            (Some(ours), Some(t)) => format!("{:.3}", t / ours),
            _ => "-".into(),
        };
        let time = seconds.map_or_else(|| "error".into(), fmt_time);
        let tp = tput.map_or_else(String::new, |v| format!("{v:.1} {unit}"));
        let tt = torch_t.map_or_else(|| "-".into(), fmt_time);
        println!(
            "{:<42} {:>12} {:>14} {:>12} {:>10}",
            case.name, time, tp, tt, ratio
        );
        if let Some(e) = &error {
            println!("    error: {e}");
        }
        rows.push(Row {
            name: case.name.clone(),
            group: case.group.to_string(),
            seconds,
            throughput: tput,
            unit: unit.to_string(),
            error,
        });
    }
    if let Some(path) = &args.json {
        let report = Report {
            backend: b.name().to_string(),
            rows,
        };
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).expect("serializable"),
        )
        .unwrap_or_else(|e| panic!("--json {path}: {e}"));
    }
}

fn fmt_time(s: f64) -> String {
    if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} us", s * 1e6)
    }
}
