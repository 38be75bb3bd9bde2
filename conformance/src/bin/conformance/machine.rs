//! The machine a report comes from, as far as it can be read without extra tools.

use serde::Serialize;

/// What a GPU vendor would ask for first.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) os: String,
    pub(crate) kernel: Option<String>,
    pub(crate) arch: &'static str,
    pub(crate) cpu: Option<String>,
    pub(crate) cpu_threads: usize,
    pub(crate) memory_gib: Option<f64>,
    pub(crate) rustc: Option<String>,
    pub(crate) git_commit: Option<String>,
    /// Environment variables that change which driver or adapter is used.
    pub(crate) env: Vec<(String, String)>,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Machine {
    pub(crate) fn probe() -> Self {
        let os = read("/etc/os-release")
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let cpu = read("/proc/cpuinfo").and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        });
        let memory_gib = read("/proc/meminfo").and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|kib| (kib / (1024.0 * 1024.0) * 10.0).round() / 10.0)
        });
        let git_commit = command("git", &["rev-parse", "--short=12", "HEAD"]).map(|c| {
            let dirty =
                command("git", &["status", "--porcelain", "--untracked-files=no"]).is_some();
            if dirty {
                format!("{c} (with local changes)")
            } else {
                c
            }
        });
        let env = [
            "BACKEND_ADAPTER",
            "VK_DRIVER_FILES",
            "VK_ICD_FILENAMES",
            "WGPU_BACKEND",
            "WGPU_ADAPTER_NAME",
            "MESA_LOADER_DRIVER_OVERRIDE",
            "LP_NUM_THREADS",
        ]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
        Self {
            os,
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
            arch: std::env::consts::ARCH,
            cpu,
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            rustc: command("rustc", &["--version"]),
            git_commit,
            env,
        }
    }
}
