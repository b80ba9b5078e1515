//! `bench`: the tokd benchmark. Starts the real release `tokd-daemon` in a temp dir and
//! measures, in one run on one machine, the hot path against its floors and the daemon at
//! scale:
//!
//! 1. a bare Unix-socket echo of a `get`'s byte counts (the floor), p50/p99/p99.9;
//! 2. `get` on one persistent connection (`tokd::Client::get_with`), unpinned, pinned with
//!    client and servers on one CPU, and pinned with them on two, with the ratio to the floor;
//! 3. `get` throughput at 1, 8, 32 and 128 connections, next to the echo at 32;
//! 4. one-shot `tokd get NAME` processes next to a minimal C client and `/bin/true`;
//! 5. 1k/10k/100k stored sessions: start time, RSS/PSS, disk, `tokd status --json`;
//! 6. a refresh storm against a local token endpoint; 7. CPU per refresh;
//!
//! and the idle daemon's memory and wake-ups.
//!
//! ```sh
//! cargo run --release -p tokd-e2e --bin bench                 # full run, a few minutes
//! cargo run --release -p tokd-e2e --bin bench -- --smoke      # everything tiny (CI)
//! cargo run --release -p tokd-e2e --bin bench -- --help       # sizes, sections, --json
//! ```
//!
//! Pinning: the daemon and the echo server are moved to the first allowed CPU with
//! `taskset -a -p -c CPU` (every thread), and the measuring client is a re-execution of this
//! binary under `taskset -c` on the same CPU or the second one.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokd::Client;
use tokd::protocol::paths::{SocketPath, SocketSource};
use tokd_daemon::store::{SessionRecord, Store, StoreOptions};
use tokd_protocol::frame::{DEFAULT_MAX_FRAME, encode_frame, encode_message, encode_payload};
use tokd_protocol::verbs::add::AddRequest;
use tokd_protocol::verbs::get::{GetRequest, TokenReply};
use tokd_protocol::{Hello, Request, Response, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The minimal C client, compiled with `cc -O2` into the temp dir at run time.
const MINIMAL_CLIENT_C: &str = include_str!("../../bench/minimal_client.c");

/// The session every hot-path measurement reads.
const HOT_SESSION: &str = "bench";

/// `/proc/PID/stat` times are in USER_HZ, 100 on every Linux ABI.
const USER_HZ_MS: u64 = 10;

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Benchmark the real tokd-daemon: latency and throughput against floors, one-shot \
             `tokd get`, scale, refresh storm, idle cost"
)]
struct Cli {
    /// Run everything tiny, in a few seconds (for CI); the numbers mean nothing.
    #[arg(long)]
    smoke: bool,
    /// Only these sections (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Section>,
    /// Requests per latency measurement (echo and get, each; 10% more are warm-up).
    #[arg(long)]
    latency_requests: Option<usize>,
    /// Rounds of the latency measurement (a new client process each); the table shows the
    /// median of each figure over the rounds.
    #[arg(long)]
    latency_rounds: Option<usize>,
    /// Seconds per throughput point.
    #[arg(long)]
    throughput_secs: Option<f64>,
    /// Connection counts for the throughput table.
    #[arg(long, value_delimiter = ',')]
    conns: Option<Vec<usize>>,
    /// One-shot processes per timed batch.
    #[arg(long)]
    oneshot_batch: Option<usize>,
    /// Timed batches per one-shot client.
    #[arg(long)]
    oneshot_samples: Option<usize>,
    /// Stored-session counts for the scale table (populated once, cumulatively).
    #[arg(long, value_delimiter = ',')]
    scale: Option<Vec<usize>>,
    /// Sessions in the refresh storm.
    #[arg(long)]
    storm_sessions: Option<usize>,
    /// Token lifetimes of the storm's sessions, `MIN-MAX` seconds, spread evenly.
    #[arg(long)]
    storm_lifetime: Option<String>,
    /// Time the storm's token endpoint takes per answer (ms), so that refreshes overlap.
    #[arg(long, default_value_t = 50)]
    endpoint_delay_ms: u64,
    /// Seconds of idleness over which wake-ups are counted.
    #[arg(long)]
    idle_secs: Option<f64>,
    /// Also write every result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where `tokd-daemon` and `tokd` are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Do not run `cargo build` for the daemon and CLI first.
    #[arg(long)]
    no_build: bool,
    /// Keep the temp dir (daemon logs, state dirs) and print its path.
    #[arg(long)]
    keep: bool,
    #[command(subcommand)]
    internal: Option<Internal>,
}

#[derive(Subcommand, Debug)]
enum Internal {
    /// Echo server for the floor: reads `req_len` bytes, answers `resp_len` bytes.
    #[command(name = "__echo-server", hide = true)]
    EchoServer {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        req_len: usize,
        #[arg(long)]
        resp_len: usize,
    },
    /// Latency client (re-executed under taskset for the pinned run); prints JSON.
    #[command(name = "__latency", hide = true)]
    Latency {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        echo_socket: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        requests: usize,
        #[arg(long)]
        req_len: usize,
        #[arg(long)]
        resp_len: usize,
        #[arg(long)]
        get_first: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Idle,
    Latency,
    Throughput,
    Oneshot,
    Scale,
    Storm,
}

/// Sizes, resolved from the flags and `--smoke`.
#[derive(Debug, Clone)]
struct Settings {
    latency_requests: usize,
    latency_rounds: usize,
    throughput: Duration,
    conns: Vec<usize>,
    oneshot_batch: usize,
    oneshot_samples: usize,
    scale: Vec<usize>,
    storm_sessions: usize,
    storm_lifetime: (u64, u64),
    endpoint_delay: Duration,
    idle: Duration,
    /// Requests for the `get` latency at each scale point.
    scale_gets: usize,
    /// Runs of `tokd status --json` per scale point.
    status_runs: usize,
    /// One-shot `tokd add`s timed per scale point.
    scale_adds: usize,
    /// How long the post-storm idle probe runs.
    idle_probe: Duration,
}

impl Settings {
    fn from_cli(cli: &Cli) -> Result<Settings> {
        let smoke = cli.smoke;
        let pick = |full: f64, tiny: f64| if smoke { tiny } else { full };
        let storm_lifetime = match &cli.storm_lifetime {
            Some(text) => {
                let (a, b) = text
                    .split_once('-')
                    .context("--storm-lifetime takes MIN-MAX seconds, e.g. 60-120")?;
                let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
                ensure!(a >= 2 && b >= a, "--storm-lifetime: need 2 <= MIN <= MAX");
                (a, b)
            }
            None if smoke => (3, 6),
            None => (60, 120),
        };
        let mut scale = cli.scale.clone().unwrap_or_else(|| {
            if smoke {
                vec![10, 100, 1_000]
            } else {
                vec![10, 1_000, 10_000, 100_000]
            }
        });
        scale.sort_unstable();
        scale.dedup();
        Ok(Settings {
            latency_requests: cli
                .latency_requests
                .unwrap_or(if smoke { 2_000 } else { 50_000 }),
            latency_rounds: cli
                .latency_rounds
                .unwrap_or(if smoke { 1 } else { 5 })
                .max(1),
            throughput: Duration::from_secs_f64(cli.throughput_secs.unwrap_or(pick(3.0, 0.3))),
            conns: cli.conns.clone().unwrap_or_else(|| vec![1, 8, 32, 128]),
            oneshot_batch: cli.oneshot_batch.unwrap_or(if smoke { 10 } else { 100 }),
            oneshot_samples: cli.oneshot_samples.unwrap_or(if smoke { 2 } else { 7 }),
            scale,
            storm_sessions: cli
                .storm_sessions
                .unwrap_or(if smoke { 200 } else { 10_000 }),
            storm_lifetime,
            endpoint_delay: Duration::from_millis(cli.endpoint_delay_ms),
            idle: Duration::from_secs_f64(cli.idle_secs.unwrap_or(pick(10.0, 1.0))),
            scale_gets: if smoke { 200 } else { 5_000 },
            status_runs: if smoke { 1 } else { 3 },
            scale_adds: if smoke { 3 } else { 21 },
            idle_probe: Duration::from_secs_f64(pick(10.0, 1.0)),
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.internal {
        Some(Internal::EchoServer {
            socket,
            req_len,
            resp_len,
        }) => return echo_server(socket, *req_len, *resp_len),
        Some(Internal::Latency {
            socket,
            echo_socket,
            name,
            requests,
            req_len,
            resp_len,
            get_first,
        }) => {
            return latency_child(
                socket,
                echo_socket,
                name,
                *requests,
                *req_len,
                *resp_len,
                *get_first,
            );
        }
        None => {}
    }
    let settings = Settings::from_cli(&cli)?;
    let runs = |s: Section| cli.only.is_empty() || cli.only.contains(&s);
    let bins = locate_binaries(&cli)?;
    let mut root = tempfile::Builder::new().prefix("tokd-bench-").tempdir()?;
    if cli.keep {
        root.disable_cleanup(true);
        eprintln!("bench: keeping {}", root.path().display());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = Report::default();

    report.machine(&bins, cli.smoke)?;

    let main_sections = [
        Section::Idle,
        Section::Latency,
        Section::Throughput,
        Section::Oneshot,
    ];
    if main_sections.iter().any(|s| runs(*s)) {
        let dir = root.path().join("main");
        let mut daemon = Daemon::start(&bins, &dir, "", tokd_e2e::DEFAULT_PROVIDERS)?;
        let names = populate_hot_daemon(&rt, &daemon)?;
        let hot = rt.block_on(async {
            let mut c = connect(&daemon.socket_path(), "tokd-bench").await?;
            c.get_with(get_request(HOT_SESSION, 10_000))
                .await
                .map_err(anyhow::Error::from)
        })?;
        report.main_version = daemon_version(&rt, &daemon)?;
        if runs(Section::Idle) {
            idle_section(&mut report, &daemon, &settings, names.len())?;
        }
        let mut echo = None;
        if runs(Section::Latency) || runs(Section::Throughput) {
            echo = Some(EchoServer::start(&bins, &dir, &hot)?);
        }
        if runs(Section::Latency)
            && let Some(echo) = &echo
        {
            latency_section(&mut report, &bins, &daemon, echo, &settings)?;
        }
        if runs(Section::Throughput)
            && let Some(echo) = &echo
        {
            throughput_section(&mut report, &rt, &daemon, echo, &settings)?;
        }
        drop(echo);
        if runs(Section::Oneshot) {
            oneshot_section(&mut report, &bins, &daemon, &dir, &hot, &settings)?;
        }
        let loaded = [Section::Latency, Section::Throughput, Section::Oneshot];
        if loaded.iter().any(|s| runs(*s)) {
            let (rss, pss) = smaps_rollup(daemon.pid())?;
            let hwm = status_kb(daemon.pid(), "VmHWM:")?;
            report.text_line(&format!(
                "\nmain daemon after the hot-path load: RSS {} PSS {} peak RSS {}",
                mib(rss),
                mib(pss),
                mib(hwm)
            ));
            report.json.insert(
                "main_daemon_after_load".into(),
                json!({"rss_kb": rss, "pss_kb": pss, "vm_hwm_kb": hwm}),
            );
        }
        daemon.stop()?;
    }
    if runs(Section::Scale) {
        scale_section(&mut report, &rt, &bins, root.path(), &settings)?;
    }
    if runs(Section::Storm) {
        storm_section(&mut report, &rt, &bins, root.path(), &settings)?;
    }
    report
        .json
        .insert("failures".into(), json!(report.failures.clone()));
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&Value::Object(report.json.clone()))?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: JSON written to {}", path.display());
    }
    if !report.failures.is_empty() {
        bail!("failed checks: {}", report.failures.join("; "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Default)]
struct Report {
    json: serde_json::Map<String, Value>,
    main_version: String,
    /// Correctness checks that failed (the run exits 1 after printing everything).
    failures: Vec<String>,
}

impl Report {
    /// Prints a line to stdout at once (a long run shows its progress).
    fn text_line(&mut self, line: &str) {
        println!("{line}");
    }

    fn machine(&mut self, bins: &Bins, smoke: bool) -> Result<()> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown", |(_, m)| m.trim())
            .to_owned();
        let nproc = std::thread::available_parallelism().map_or(1, usize::from);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let load = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let cpus = allowed_cpus();
        let mode = if smoke {
            "SMOKE (tiny sizes; numbers mean nothing)"
        } else {
            "full"
        };
        self.text_line(&format!(
            "tokd benchmark ({mode})\nmachine: {nproc} CPUs allowed ({cpus}), {model}; Linux {kernel}; load average at start {load}\nbinaries: {} (tokd CLI linked {})\npinning: unpinned runs use every allowed CPU; pinned runs move the daemon and the echo server to the first allowed CPU (`taskset -a -p -c CPU PID`, all threads) and re-execute the measuring client under `taskset -c` on that CPU (same CPU) or the second (across CPUs)",
            bins.daemon.parent().map_or_else(String::new, |p| p.display().to_string()),
            linkage(&bins.tokd)
        ));
        self.json.insert(
            "machine".into(),
            json!({
                "nproc": nproc, "cpus_allowed": cpus, "cpu_model": model, "kernel": kernel,
                "loadavg_at_start": load, "smoke": smoke,
                "binaries": bins.daemon.parent().map(|p| p.display().to_string()),
                "cli_linkage": linkage(&bins.tokd),
                "pinning": "daemon+echo: taskset -a -p -c FIRST PID; client: re-exec under taskset -c FIRST (same CPU) or SECOND (across CPUs)",
            }),
        );
        Ok(())
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

/// Latency summary of one measurement, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stats {
    n: usize,
    mean_us: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
}

fn stats(mut ns: Vec<u64>) -> Stats {
    ns.sort_unstable();
    let n = ns.len();
    let at = |q: f64| -> f64 {
        if n == 0 {
            return f64::NAN;
        }
        let idx = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        ns[idx] as f64 / 1000.0
    };
    let mean = if n == 0 {
        f64::NAN
    } else {
        ns.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1000.0
    };
    Stats {
        n,
        mean_us: mean,
        p50_us: at(0.50),
        p90_us: at(0.90),
        p99_us: at(0.99),
        p999_us: at(0.999),
        max_us: at(1.0),
    }
}

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

// ---------------------------------------------------------------------------------------------
// Binaries, daemons, /proc

struct Bins {
    daemon: PathBuf,
    tokd: PathBuf,
    bench: PathBuf,
}

/// Finds `tokd-daemon` and `tokd` next to this binary (`target/release/`), building them
/// first unless `--no-build`: a benchmark of stale binaries is worse than none.
fn locate_binaries(cli: &Cli) -> Result<Bins> {
    let bench = std::env::current_exe().context("locating the bench binary")?;
    let dir = match &cli.bin_dir {
        Some(d) => d.clone(),
        None => bench
            .parent()
            .context("the bench binary has no directory")?
            .to_path_buf(),
    };
    let release = dir.file_name().is_some_and(|n| n == "release");
    if !release {
        eprintln!(
            "bench: WARNING: {} is not a release directory; run with `cargo run --release`",
            dir.display()
        );
    }
    if !cli.no_build && cli.bin_dir.is_none() {
        eprintln!("bench: building tokd-daemon and tokd (skip with --no-build)");
        tokd_e2e::build_binaries_in(&dir)?;
        relink_cli_static(&dir);
    }
    let bins = Bins {
        daemon: dir.join("tokd-daemon"),
        tokd: dir.join("tokd"),
        bench,
    };
    for b in [&bins.daemon, &bins.tokd] {
        ensure!(b.exists(), "{} not found", b.display());
    }
    Ok(bins)
}

/// Relinks `tokd` as a static PIE, the way `scripts/install` installs it: one-shot `tokd get`
/// is mostly process start-up, and a static binary skips the dynamic loader. Only the final
/// link changes (`cargo rustc` passes the flag to the `tokd` crate alone). Where no static C
/// library is installed, the dynamic binary stays and the report says so.
fn relink_cli_static(profile_dir: &Path) {
    let Some(target_dir) = profile_dir.parent() else {
        return;
    };
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["rustc", "--quiet", "-p", "tokd", "--bin", "tokd"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    cmd.args(["--", "-C", "target-feature=+crt-static"]);
    match cmd.status() {
        Ok(status) if status.success() => {}
        outcome => eprintln!(
            "bench: WARNING: static link of tokd failed ({outcome:?}); measuring the dynamic binary"
        ),
    }
}

/// How an executable is linked: `static` when it has no program interpreter (no dynamic
/// loader runs before `main`), else `dynamic`.
fn linkage(exe: &Path) -> &'static str {
    const PT_INTERP: u32 = 3;
    let Ok(elf) = std::fs::read(exe) else {
        return "unknown";
    };
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // 64-bit little-endian ELF: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    if elf.get(..5) != Some(b"\x7fELF\x02".as_slice()) {
        return "unknown";
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return "unknown";
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return "unknown";
    };
    let has_interp = (0..usize::from(count)).any(|i| {
        let at = phoff + i * usize::from(entsize);
        elf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            == Some(PT_INTERP)
    });
    if has_interp { "dynamic" } else { "static" }
}

/// A `tokd-daemon` process in its own directory (config, key, state, socket, log).
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    fn write_config(dir: &Path, daemon_extra: &str, providers: &str) -> Result<()> {
        std::fs::create_dir_all(dir.join("run"))?;
        let text = format!(
            "[daemon]\nkey_file = \"{}\"\nstate_dir = \"{}\"\n{daemon_extra}\n{providers}\n",
            dir.join("config/key").display(),
            dir.join("state").display(),
        );
        std::fs::write(dir.join("config.toml"), text)?;
        Ok(())
    }

    fn store_options(dir: &Path) -> StoreOptions {
        StoreOptions {
            state_dir: dir.join("state"),
            key_file: dir.join("config/key"),
            credentials_dir: None,
        }
    }

    /// Spawns the daemon on an existing config; does not wait.
    fn spawn(bins: &Bins, dir: &Path) -> Result<Daemon> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))?;
        let socket = dir.join("run/tokd.sock");
        let mut cmd = Command::new(&bins.daemon);
        cmd.arg("--config")
            .arg(dir.join("config.toml"))
            .arg("--socket")
            .arg(&socket);
        tokd_e2e::isolate_env(&mut cmd, dir);
        cmd.env("TOKD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().context("spawning tokd-daemon")?;
        Ok(Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            socket,
        })
    }

    /// Writes the config, spawns, waits for a hello answer.
    fn start(bins: &Bins, dir: &Path, daemon_extra: &str, providers: &str) -> Result<Daemon> {
        Self::write_config(dir, daemon_extra, providers)?;
        let mut d = Self::spawn(bins, dir)?;
        let socket = d.socket.clone();
        d.wait_until(Duration::from_secs(30), || tokd_e2e::probe(&socket))?;
        Ok(d)
    }

    fn wait_until(&mut self, limit: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "tokd-daemon exited with {status}:\n{}",
                    tail(&self.log(), 3000)
                );
            }
            ensure!(
                Instant::now() < deadline,
                "tokd-daemon did not serve within {limit:?}:\n{}",
                tail(&self.log(), 3000)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn socket_path(&self) -> SocketPath {
        SocketPath {
            path: self.socket.clone(),
            source: SocketSource::Flag,
        }
    }

    /// `tokd ARGS…` against this daemon.
    fn tokd(&self, bins: &Bins, args: &[&str]) -> Command {
        let mut cmd = Command::new(&bins.tokd);
        cmd.arg("--socket").arg(&self.socket).args(args);
        tokd_e2e::isolate_env(&mut cmd, &self.dir);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// SIGTERM, then waits; returns how long the exit took.
    fn stop(&mut self) -> Result<Duration> {
        let Some(mut child) = self.child.take() else {
            bail!("the daemon is not running");
        };
        let t = Instant::now();
        if let Some(pid) = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = t + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(status.success(), "tokd-daemon exited with {status}");
                return Ok(t.elapsed());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("tokd-daemon did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Daemon {
    /// SIGKILL and reap (for a daemon that no longer answers SIGTERM).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() && self.stop().is_err() {
            eprintln!(
                "bench: a daemon did not stop cleanly; its log is in {}",
                self.dir.display()
            );
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `Rss` and `Pss` of a process in kB, from `/proc/PID/smaps_rollup`.
fn smaps_rollup(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in smaps_rollup"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

/// A `kB` field of `/proc/PID/status`.
fn status_kb(pid: u32, name: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {name} in /proc/{pid}/status"))
}

/// utime + stime of a process (all threads, live and exited), in ms.
fn cpu_ms(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) * USER_HZ_MS)
}

/// Context switches (voluntary, involuntary) summed over the live threads, and their count.
fn ctx_switches(pid: u32) -> Result<(u64, u64, usize)> {
    let mut vol = 0;
    let mut nonvol = 0;
    let mut threads = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path().join("status")) else {
            continue;
        };
        threads += 1;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:") {
                vol += v.trim().parse::<u64>().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
                nonvol += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok((vol, nonvol, threads))
}

/// Bytes on disk (allocated blocks) and apparent size of everything under `dir`.
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut blocks = 0;
    let mut apparent = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            blocks += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    (blocks, apparent)
}

/// The allowed CPU list of this process, as `taskset -c` takes it.
fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "0".into())
}

/// Sets the CPU affinity of every thread of `pid`.
fn taskset_pid(pid: u32, cpus: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    ensure!(status.success(), "taskset -a -p -c {cpus} {pid} failed");
    Ok(())
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------------------------------------
// Realistic tokens

/// A small deterministic generator (xorshift64*), so no dependency is needed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// A JWT-shaped token of about `len` bytes: base64url header, claims (with `exp`) and a
/// 64-byte signature.
fn jwt(kind: &str, seed: u64, exp_ms: i64, len: usize) -> String {
    let mut rng = Rng::new(seed ^ kind.len() as u64);
    let header = b64url(br#"{"alg":"ES256","typ":"JWT","kid":"bench-2024-key"}"#);
    let sig = b64url(&rng.bytes(64));
    let exp = exp_ms / 1000;
    let claims = |pad: &str| {
        format!(
            r#"{{"iss":"https://id.example.com/realms/corp","sub":"{:016x}","aud":["api","tokd"],"exp":{exp},"iat":{},"jti":"{kind}-{:016x}","azp":"tokd","scope":"openid offline_access api","email":"user{seed}@example.com","pad":"{pad}"}}"#,
            rng.0,
            exp - 3600,
            seed
        )
    };
    let budget = len.saturating_sub(header.len() + sig.len() + 2) * 3 / 4;
    let pad = "x".repeat(budget.saturating_sub(claims("").len()));
    format!("{header}.{}.{sig}", b64url(claims(&pad).as_bytes()))
}

fn refresh_token(i: usize, rng: &mut Rng) -> String {
    format!("rt-{i}-{}", b64url(&rng.bytes(48)))
}

/// A token response as a provider would send it: ~1 KiB JWT access token, a refresh token
/// and a ~1 KiB id_token.
fn token_response(i: usize, expires_in_s: u64, rng: &mut Rng) -> String {
    let exp = epoch_ms() + i64::try_from(expires_in_s).unwrap_or(0) * 1000;
    json!({
        "access_token": jwt("at", i as u64, exp, 1024),
        "token_type": "Bearer",
        "expires_in": expires_in_s,
        "refresh_token": refresh_token(i, rng),
        "id_token": jwt("id", i as u64 + (1 << 40), exp, 1024),
        "scope": "openid offline_access api",
    })
    .to_string()
}

fn scale_name(i: usize) -> String {
    format!("s{i:06}")
}

/// The record the daemon would store for an imported session of provider `corp`, valid for
/// 30 days (nothing refreshes during the measurement).
fn scale_record(i: usize, now: i64) -> SessionRecord {
    let mut rng = Rng::new(i as u64 + 7);
    let exp = now + 30 * 24 * 3600 * 1000;
    SessionRecord {
        name: scale_name(i),
        provider: "corp".into(),
        attrs: Vec::new(),
        access_token: Secret::new(jwt("at", i as u64, exp, 1024)),
        token_type: "Bearer".into(),
        expires_at_ms: exp,
        refresh_token: Some(Secret::new(refresh_token(i, &mut rng))),
        refresh_expires_at_ms: None,
        id_token: Some(Secret::new(jwt("id", i as u64 + (1 << 40), exp, 1024))),
        scope: Some("openid offline_access api".into()),
        created_at_ms: now,
        last_refresh_at_ms: None,
        refresh_count: 0,
        terminal: None,
        refresh_origin: Some("http://127.0.0.1:9".into()),
        in_flight_since_ms: None,
    }
}

fn get_request(name: &str, min_valid_ms: u64) -> GetRequest {
    GetRequest {
        name: name.to_owned(),
        min_valid_ms,
        wait_ms: 10_000,
        include_id_token: false,
        target: tokd_protocol::TokenTarget::default(),
    }
}

/// The `get` request frame as clients send it for a session's own token (the 1.0 layout,
/// which every daemon reads).
fn get_frame(name: &str, min_valid_ms: u64) -> Request {
    Request::Get(tokd_protocol::v0::GetRequest {
        name: name.to_owned(),
        min_valid_ms,
        wait_ms: 10_000,
        include_id_token: false,
    })
}

async fn connect(socket: &SocketPath, name: &str) -> Result<Client> {
    Client::connect_named(socket, name)
        .await
        .with_context(|| format!("connecting to {}", socket.path.display()))
}

fn daemon_version(rt: &tokio::runtime::Runtime, d: &Daemon) -> Result<String> {
    rt.block_on(async {
        let c = connect(&d.socket_path(), "tokd-bench").await?;
        Ok(c.daemon_version().to_owned())
    })
}

/// Imports `bench` and nine more sessions (1 h tokens) through the socket.
fn populate_hot_daemon(rt: &tokio::runtime::Runtime, d: &Daemon) -> Result<Vec<String>> {
    let names: Vec<String> = std::iter::once(HOT_SESSION.to_owned())
        .chain((1..10).map(|i| format!("app-{i}")))
        .collect();
    rt.block_on(async {
        let mut c = connect(&d.socket_path(), "tokd-bench").await?;
        let mut rng = Rng::new(1);
        for (i, name) in names.iter().enumerate() {
            c.add(AddRequest {
                name: name.clone(),
                provider: "corp".into(),
                attrs: Vec::new(),
                replace: false,
                token_response: Some(Secret::new(token_response(i, 3600, &mut rng))),
            })
            .await
            .with_context(|| format!("adding {name}"))?;
        }
        anyhow::Ok(())
    })?;
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Idle

fn idle_section(report: &mut Report, d: &Daemon, s: &Settings, sessions: usize) -> Result<()> {
    eprintln!("bench: idle ({:.0} s)", s.idle.as_secs_f64());
    std::thread::sleep(Duration::from_millis(500));
    let pid = d.pid();
    let (rss, pss) = smaps_rollup(pid)?;
    let (v0, n0, threads) = ctx_switches(pid)?;
    let cpu0 = cpu_ms(pid)?;
    std::thread::sleep(s.idle);
    let (v1, n1, _) = ctx_switches(pid)?;
    let cpu1 = cpu_ms(pid)?;
    let secs = s.idle.as_secs_f64();
    let wakeups = (v1 + n1).saturating_sub(v0 + n0);
    report.text_line(&format!(
        "\nIDLE daemon, {sessions} sessions ({}): PSS {} (target <= 5 MiB: {}), RSS {}, {threads} threads; \
         {wakeups} context switches in {secs:.0} s ({:.2}/s: {} voluntary, {} involuntary), CPU {} ms",
        report.main_version,
        mib(pss),
        if pss <= 5 * 1024 { "met" } else { "MISSED" },
        mib(rss),
        wakeups as f64 / secs,
        v1.saturating_sub(v0),
        n1.saturating_sub(n0),
        cpu1.saturating_sub(cpu0),
    ));
    report.json.insert(
        "idle".into(),
        json!({
            "sessions": sessions, "pss_kb": pss, "rss_kb": rss, "threads": threads,
            "seconds": secs, "ctx_switches_voluntary": v1.saturating_sub(v0),
            "ctx_switches_involuntary": n1.saturating_sub(n0),
            "wakeups_per_s": wakeups as f64 / secs, "cpu_ms": cpu1.saturating_sub(cpu0),
        }),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Echo floor

/// The echo server child (same process shape as the daemon: a multi-thread tokio runtime).
struct EchoServer {
    child: Child,
    socket: PathBuf,
    req_len: usize,
    resp_len: usize,
}

impl EchoServer {
    /// Starts an echo server answering as many bytes as `hot`'s `get` answer frame, for a
    /// request as long as its `get` frame.
    fn start(bins: &Bins, dir: &Path, hot: &TokenReply) -> Result<EchoServer> {
        let mut req = Vec::new();
        encode_message(&get_frame(HOT_SESSION, 10_000), DEFAULT_MAX_FRAME, &mut req)?;
        let resp_len = 4 + encode_payload(&Response::Token2(hot.clone()))?.len();
        let socket = dir.join("run/echo.sock");
        let child = Command::new(&bins.bench)
            .arg("__echo-server")
            .arg("--socket")
            .arg(&socket)
            .args(["--req-len", &req.len().to_string()])
            .args(["--resp-len", &resp_len.to_string()])
            .stdin(Stdio::null())
            .spawn()
            .context("starting the echo server")?;
        let mut echo = EchoServer {
            child,
            socket,
            req_len: req.len(),
            resp_len,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&echo.socket).is_err() {
            if let Some(status) = echo.child.try_wait()? {
                bail!("echo server exited with {status}");
            }
            ensure!(Instant::now() < deadline, "echo server did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(echo)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo_server(socket: &Path, req_len: usize, resp_len: usize) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)?;
        loop {
            let (mut stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let mut req = vec![0u8; req_len];
                let resp = vec![0x5au8; resp_len];
                while stream.read_exact(&mut req).await.is_ok() {
                    if stream.write_all(&resp).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// 1–2. Latency on one connection

#[derive(Debug, Serialize, Deserialize)]
struct LatencyPair {
    echo: Stats,
    get: Stats,
}

/// The measuring client: the echo, then `get` (or the other way round with `get_first`),
/// each with 10% warm-up; prints the two summaries as JSON.
///
/// One server at a time, not interleaved: with both servers busy in the same stretch of
/// time, the scheduler spreads their threads over the two CPUs and the client can share a
/// CPU with only one of them, which then answers about three times faster (same-CPU against
/// cross-CPU wake-ups). Which one that was decided each round, not the servers. Rounds
/// alternate the order so that slow drift hits both alike.
fn latency_child(
    socket: &Path,
    echo_socket: &Path,
    name: &str,
    requests: usize,
    req_len: usize,
    resp_len: usize,
    get_first: bool,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pair = rt.block_on(async {
        let mut echo = tokio::net::UnixStream::connect(echo_socket).await?;
        let sp = SocketPath {
            path: socket.to_path_buf(),
            source: SocketSource::Flag,
        };
        let mut client = connect(&sp, "tokd-bench-latency").await?;
        let req_bytes = vec![0xa5u8; req_len];
        let mut resp = vec![0u8; resp_len];
        let get = get_request(name, 10_000);
        let warmup = (requests / 10).max(100);
        let mut echo_ns = Vec::with_capacity(requests);
        let mut get_ns = Vec::with_capacity(requests);
        for phase in if get_first {
            [true, false]
        } else {
            [false, true]
        } {
            for i in 0..requests + warmup {
                let t = Instant::now();
                if phase {
                    std::hint::black_box(client.get_with(get.clone()).await?);
                } else {
                    echo.write_all(&req_bytes).await?;
                    echo.read_exact(&mut resp).await?;
                }
                if i >= warmup {
                    let took = elapsed_ns(t);
                    if phase {
                        get_ns.push(took);
                    } else {
                        echo_ns.push(took);
                    }
                }
            }
        }
        anyhow::Ok(LatencyPair {
            echo: stats(echo_ns),
            get: stats(get_ns),
        })
    })?;
    println!("{}", serde_json::to_string(&pair)?);
    Ok(())
}

/// The median over rounds of every field.
fn median_pair(rounds: &[LatencyPair]) -> LatencyPair {
    let med = |f: &dyn Fn(&LatencyPair) -> &Stats| -> Stats {
        let m = |g: fn(&Stats) -> f64| median(&rounds.iter().map(|r| g(f(r))).collect::<Vec<_>>());
        Stats {
            n: rounds.iter().map(|r| f(r).n).sum(),
            mean_us: m(|s| s.mean_us),
            p50_us: m(|s| s.p50_us),
            p90_us: m(|s| s.p90_us),
            p99_us: m(|s| s.p99_us),
            p999_us: m(|s| s.p999_us),
            max_us: m(|s| s.max_us),
        }
    };
    LatencyPair {
        echo: med(&|r| &r.echo),
        get: med(&|r| &r.get),
    }
}

/// Where the latency measurement runs. Unpinned, the scheduler decides per round whether a
/// server's wake-up lands on the client's CPU or the other one, so each unpinned round is one
/// of the two pinned placements, picked by lottery and independently for each server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Every CPU allowed, for the client and both servers.
    Unpinned,
    /// Servers and client on the first allowed CPU.
    SameCpu,
    /// Servers on the first allowed CPU, the client on the second (every wake-up crosses).
    CrossCpu,
}

impl Placement {
    fn label(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::SameCpu => "pinned, same CPU",
            Placement::CrossCpu => "pinned, across CPUs",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::SameCpu => "pinned_same_cpu",
            Placement::CrossCpu => "pinned_cross_cpu",
        }
    }
}

/// The CPU ids in a `taskset -c` list such as `0-3,6`.
fn cpu_ids(list: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) => ids.extend((a..=b).map(|i| i.to_string())),
                _ => ids.push(part.to_owned()),
            },
            None => ids.push(part.to_owned()),
        }
    }
    ids
}

fn run_latency_child(
    bins: &Bins,
    d: &Daemon,
    echo: &EchoServer,
    s: &Settings,
    client_cpu: Option<&str>,
    get_first: bool,
) -> Result<LatencyPair> {
    let mut cmd = if let Some(cpu) = client_cpu {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu]).arg(&bins.bench);
        c
    } else {
        Command::new(&bins.bench)
    };
    cmd.arg("__latency")
        .arg("--socket")
        .arg(&d.socket)
        .arg("--echo-socket")
        .arg(&echo.socket)
        .args(["--name", HOT_SESSION])
        .args(["--requests", &s.latency_requests.to_string()])
        .args(["--req-len", &echo.req_len.to_string()])
        .args(["--resp-len", &echo.resp_len.to_string()])
        .stdin(Stdio::null());
    if get_first {
        cmd.arg("--get-first");
    }
    let out = cmd.output().context("running the latency client")?;
    ensure!(
        out.status.success(),
        "latency client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// One latency round in `placement`: pins the servers (and the client) as it says, measures,
/// and gives the servers every CPU back.
fn latency_round(
    bins: &Bins,
    d: &Daemon,
    echo: &EchoServer,
    s: &Settings,
    placement: Placement,
    cpus: &[String],
    get_first: bool,
) -> Result<LatencyPair> {
    let all = cpus.join(",");
    let (server_cpu, client_cpu) = match placement {
        Placement::Unpinned => return run_latency_child(bins, d, echo, s, None, get_first),
        Placement::SameCpu => (&cpus[0], &cpus[0]),
        Placement::CrossCpu => (&cpus[0], &cpus[1]),
    };
    taskset_pid(d.pid(), server_cpu)?;
    taskset_pid(echo.child.id(), server_cpu)?;
    let pair = run_latency_child(bins, d, echo, s, Some(client_cpu), get_first);
    taskset_pid(d.pid(), &all)?;
    taskset_pid(echo.child.id(), &all)?;
    pair
}

/// How many unpinned rounds of each server landed on the client's CPU: those whose p50 is
/// nearer that server's same-CPU p50 than its across-CPU p50. `None` without both pinned
/// placements.
fn placement_lottery(
    placements: &[Placement],
    rounds: &[Vec<LatencyPair>],
    medians: &[LatencyPair],
) -> Option<String> {
    let at = |p: Placement| placements.iter().position(|&q| q == p);
    let (unpinned, same, cross) = (
        at(Placement::Unpinned)?,
        at(Placement::SameCpu)?,
        at(Placement::CrossCpu)?,
    );
    let count = |pick: fn(&LatencyPair) -> &Stats| {
        let (near, far) = (pick(&medians[same]).p50_us, pick(&medians[cross]).p50_us);
        rounds[unpinned]
            .iter()
            .filter(|r| (pick(r).p50_us - near).abs() < (pick(r).p50_us - far).abs())
            .count()
    };
    let n = rounds[unpinned].len();
    Some(format!(
        "unpinned rounds whose p50 is nearer the same-CPU figure than the across-CPU one: echo {} of {n}, get {} of {n}",
        count(|r| &r.echo),
        count(|r| &r.get)
    ))
}

fn latency_section(
    report: &mut Report,
    bins: &Bins,
    d: &Daemon,
    echo: &EchoServer,
    s: &Settings,
) -> Result<()> {
    eprintln!(
        "bench: latency ({} rounds × {} requests each, per placement)",
        s.latency_rounds, s.latency_requests
    );
    let cpus = cpu_ids(&allowed_cpus());
    let mut placements = vec![Placement::Unpinned, Placement::SameCpu];
    if cpus.len() > 1 {
        placements.push(Placement::CrossCpu);
    }
    // Rounds cycle through the placements; each round is a new client process, so the
    // unpinned lottery is drawn again every round.
    let mut rounds: Vec<Vec<LatencyPair>> = placements.iter().map(|_| Vec::new()).collect();
    for round in 0..s.latency_rounds {
        for (i, &placement) in placements.iter().enumerate() {
            let get_first = round % 2 == 1;
            rounds[i].push(latency_round(
                bins, d, echo, s, placement, &cpus, get_first,
            )?);
        }
    }
    let medians: Vec<LatencyPair> = rounds.iter().map(|r| median_pair(r)).collect();
    let mut t = format!(
        "\n1-2. LATENCY, one persistent connection, {} requests after warm-up per round, median of {} rounds (request {} B, answer {} B)\n",
        s.latency_requests, s.latency_rounds, echo.req_len, echo.resp_len
    );
    let _ = writeln!(
        t,
        "{:<50} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "", "p50 µs", "p99 µs", "p99.9 µs", "mean µs", "p50 ×floor", "p99 ×floor"
    );
    for (placement, pair) in placements.iter().zip(&medians) {
        for (what, st, ratio) in [
            ("echo floor", &pair.echo, false),
            ("tokd get (Client::get_with)", &pair.get, true),
        ] {
            let (r50, r99) = if ratio {
                (
                    format!("{:.2}", st.p50_us / pair.echo.p50_us),
                    format!("{:.2}", st.p99_us / pair.echo.p99_us),
                )
            } else {
                ("".into(), "".into())
            };
            let _ = writeln!(
                t,
                "{:<50} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>10}",
                format!("{what}, {}", placement.label()),
                st.p50_us,
                st.p99_us,
                st.p999_us,
                st.mean_us,
                r50,
                r99
            );
        }
    }
    report.text_line(t.trim_end());
    if s.latency_rounds > 1 {
        let p50s = |rounds: &[LatencyPair], get: bool| {
            rounds
                .iter()
                .map(|r| format!("{:.1}", if get { r.get.p50_us } else { r.echo.p50_us }))
                .collect::<Vec<_>>()
                .join("/")
        };
        let mut line = String::from("p50 per round (µs):");
        for (placement, r) in placements.iter().zip(&rounds) {
            let _ = write!(
                line,
                " {} echo {} get {};",
                placement.label(),
                p50s(r, false),
                p50s(r, true)
            );
        }
        report.text_line(line.trim_end_matches(';'));
    }
    if let Some(lottery) = placement_lottery(&placements, &rounds, &medians) {
        report.text_line(&lottery);
    }
    let mut json = serde_json::Map::new();
    json.insert("request_bytes".into(), json!(echo.req_len));
    json.insert("answer_bytes".into(), json!(echo.resp_len));
    json.insert("rounds".into(), json!(s.latency_rounds));
    for ((placement, r), pair) in placements.iter().zip(&rounds).zip(&medians) {
        json.insert(
            placement.key().into(),
            json!({
                "rounds": r, "median": pair,
                "ratio_p50": pair.get.p50_us / pair.echo.p50_us,
                "ratio_p99": pair.get.p99_us / pair.echo.p99_us,
            }),
        );
    }
    report.json.insert("latency".into(), Value::Object(json));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Throughput

#[derive(Debug, Serialize)]
struct Throughput {
    conns: usize,
    requests: usize,
    seconds: f64,
    per_s: f64,
    latency: Stats,
}

/// `conns` connections, each asking back-to-back for `dur`; all connect first.
async fn throughput_get(socket: &SocketPath, conns: usize, dur: Duration) -> Result<Throughput> {
    let barrier = Arc::new(tokio::sync::Barrier::new(conns + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let socket = socket.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let client = connect(&socket, "tokd-bench-throughput").await;
            barrier.wait().await;
            let mut client = client?;
            let req = get_request(HOT_SESSION, 10_000);
            let end = Instant::now() + dur;
            let mut lat = Vec::with_capacity(4096);
            while Instant::now() < end {
                let t = Instant::now();
                let reply = client.get_with(req.clone()).await?;
                lat.push(elapsed_ns(t));
                std::hint::black_box(reply);
            }
            anyhow::Ok(lat)
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    collect_throughput(tasks, conns, start).await
}

async fn throughput_echo(echo: &EchoServer, conns: usize, dur: Duration) -> Result<Throughput> {
    let barrier = Arc::new(tokio::sync::Barrier::new(conns + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let barrier = barrier.clone();
        let socket = echo.socket.clone();
        let (req_len, resp_len) = (echo.req_len, echo.resp_len);
        tasks.spawn(async move {
            let stream = tokio::net::UnixStream::connect(&socket).await;
            barrier.wait().await;
            let mut stream = stream?;
            let req = vec![0xa5u8; req_len];
            let mut resp = vec![0u8; resp_len];
            let end = Instant::now() + dur;
            let mut lat = Vec::with_capacity(4096);
            while Instant::now() < end {
                let t = Instant::now();
                stream.write_all(&req).await?;
                stream.read_exact(&mut resp).await?;
                lat.push(elapsed_ns(t));
            }
            anyhow::Ok(lat)
        });
    }
    barrier.wait().await;
    let start = Instant::now();
    collect_throughput(tasks, conns, start).await
}

async fn collect_throughput(
    mut tasks: tokio::task::JoinSet<Result<Vec<u64>>>,
    conns: usize,
    start: Instant,
) -> Result<Throughput> {
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Throughput {
        conns,
        requests: all.len(),
        seconds,
        per_s: all.len() as f64 / seconds,
        latency: stats(all),
    })
}

fn throughput_section(
    report: &mut Report,
    rt: &tokio::runtime::Runtime,
    d: &Daemon,
    echo: &EchoServer,
    s: &Settings,
) -> Result<()> {
    eprintln!(
        "bench: throughput ({:.1} s per point)",
        s.throughput.as_secs_f64()
    );
    let socket = d.socket_path();
    let mut gets = Vec::new();
    for &c in &s.conns {
        gets.push(rt.block_on(throughput_get(&socket, c, s.throughput))?);
    }
    let echo_conns = if s.conns.contains(&32) {
        32
    } else {
        s.conns.iter().copied().max().unwrap_or(1)
    };
    let e = rt.block_on(throughput_echo(echo, echo_conns, s.throughput))?;
    let mut t = format!(
        "\n3. THROUGHPUT, back-to-back requests on N connections, {:.1} s per point (client: this process, tokio multi-thread)\n",
        s.throughput.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "{:<22} {:>12} {:>9} {:>9} {:>9}",
        "", "requests/s", "p50 µs", "p99 µs", "p99.9 µs"
    );
    let rows = gets
        .iter()
        .map(|g| ("tokd get", g))
        .chain(std::iter::once(("echo floor", &e)));
    for (label, p) in rows {
        let _ = writeln!(
            t,
            "{:<22} {:>12.0} {:>9.1} {:>9.1} {:>9.1}",
            format!("{label}, {} conn", p.conns),
            p.per_s,
            p.latency.p50_us,
            p.latency.p99_us,
            p.latency.p999_us
        );
    }
    let same = gets.iter().find(|g| g.conns == e.conns);
    if let Some(g) = same {
        let _ = write!(
            t,
            "tokd/echo at {} conn: {:.2} of the floor's requests/s",
            e.conns,
            g.per_s / e.per_s
        );
    }
    report.text_line(t.trim_end());
    report.json.insert(
        "throughput".into(),
        json!({"get": gets, "echo": e,
               "get_over_echo": same.map(|g| g.per_s / e.per_s)}),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. One-shot processes

fn oneshot_section(
    report: &mut Report,
    bins: &Bins,
    d: &Daemon,
    dir: &Path,
    hot: &TokenReply,
    s: &Settings,
) -> Result<()> {
    eprintln!(
        "bench: one-shot ({} samples × {} calls)",
        s.oneshot_samples, s.oneshot_batch
    );
    // Compile the C floor.
    let src = dir.join("minimal_client.c");
    let exe = dir.join("minimal_client");
    std::fs::write(&src, MINIMAL_CLIENT_C)?;
    let out = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .context("running cc")?;
    ensure!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bytes = Vec::new();
    encode_frame(
        &Hello::current("minimal-c").encode(),
        DEFAULT_MAX_FRAME,
        &mut bytes,
    )?;
    encode_message(
        &get_frame(HOT_SESSION, 10_000),
        DEFAULT_MAX_FRAME,
        &mut bytes,
    )?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();

    let expected = format!("{}\n", hot.access_token.expose());
    let run = |cmd: &mut Command, check: bool| -> Result<()> {
        let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output()?;
        ensure!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if check {
            ensure!(
                out.stdout == expected.as_bytes(),
                "{cmd:?} printed something else than the token"
            );
        }
        Ok(())
    };
    let mut c_cmd = Command::new(&exe);
    c_cmd.arg(&d.socket).arg(&hex).stdin(Stdio::null());
    let mut tokd_cmd = d.tokd(bins, &["get", HOT_SESSION]);
    let mut true_cmd = Command::new("/bin/true");
    true_cmd.stdin(Stdio::null());
    run(&mut c_cmd, true)?;
    run(&mut tokd_cmd, true)?;

    // Interleaved batches, so background noise hits all three alike.
    let mut ms: [Vec<f64>; 3] = Default::default();
    for _ in 0..s.oneshot_samples {
        for (k, cmd) in [&mut true_cmd, &mut c_cmd, &mut tokd_cmd]
            .into_iter()
            .enumerate()
        {
            let t = Instant::now();
            for _ in 0..s.oneshot_batch {
                run(cmd, false)?;
            }
            ms[k].push(t.elapsed().as_secs_f64() * 1000.0 / s.oneshot_batch as f64);
        }
    }
    let labels = [
        "/bin/true (process spawn)",
        "minimal C client (floor)",
        "tokd get NAME",
    ];
    let mut t = format!(
        "\n4. ONE-SHOT PROCESS, start to token on stdout, {} batches × {} calls (ms per call)\n",
        s.oneshot_samples, s.oneshot_batch
    );
    let _ = writeln!(
        t,
        "{:<28} {:>9} {:>9} {:>9}",
        "", "median", "min", "×C floor"
    );
    let c_median = median(&ms[1]);
    let mut rows = Vec::new();
    for (label, v) in labels.iter().zip(&ms) {
        let m = median(v);
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let _ = writeln!(t, "{label:<28} {m:>9.3} {min:>9.3} {:>9.2}", m / c_median);
        rows.push(json!({"client": label, "median_ms": m, "min_ms": min, "samples_ms": v}));
    }
    report.text_line(t.trim_end());
    report.json.insert(
        "oneshot".into(),
        json!({"batch": s.oneshot_batch, "rows": rows}),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Scale

/// Adds sessions `from..to` offline through the daemon's own store (sealed, flushed), one
/// write at a time: concurrent `Store::put`s deadlock in sled 0.34.7's `flush_async`
/// (spacejam/sled#1308), seen here with 64 in flight.
fn populate_offline(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    from: usize,
    to: usize,
) -> Result<()> {
    let (store, loaded) =
        Store::open(&Daemon::store_options(dir)).context("opening the store offline")?;
    ensure!(
        loaded.records.len() == from,
        "the store holds {} sessions, expected {from}",
        loaded.records.len()
    );
    drop(loaded);
    rt.block_on(async {
        let now = epoch_ms();
        for i in from..to {
            store.put(&scale_record(i, now)).await?;
        }
        store.flush().await?;
        anyhow::Ok(())
    })?;
    drop(store);
    Ok(())
}

/// Times `runs` one-shot `tokd add` processes, each importing a new session (with a refresh
/// token of its own) into a daemon holding `n`; removes them afterwards, untimed.
fn time_adds(d: &Daemon, bins: &Bins, n: usize, runs: usize) -> Result<Vec<f64>> {
    let mut rng = Rng::new(0xadd0 + n as u64);
    let mut ms = Vec::with_capacity(runs);
    let names: Vec<String> = (0..runs).map(|k| format!("bench-add-{k}")).collect();
    for (k, name) in names.iter().enumerate() {
        let body = token_response(n + k, 30 * 24 * 3600, &mut rng);
        let mut cmd = d.tokd(bins, &["add", name, "--provider", "corp"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let t = Instant::now();
        let mut child = cmd.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, body.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            out.status.success(),
            "tokd add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for name in &names {
        let out = d.tokd(bins, &["rm", name]).output()?;
        ensure!(out.status.success(), "tokd rm {name} failed");
    }
    Ok(ms)
}

fn scale_section(
    report: &mut Report,
    rt: &tokio::runtime::Runtime,
    bins: &Bins,
    root: &Path,
    s: &Settings,
) -> Result<()> {
    let dir = root.join("scale");
    Daemon::write_config(&dir, "", tokd_e2e::DEFAULT_PROVIDERS)?;
    let mut have = 0;
    let mut rows = Vec::new();
    let mut t = String::from(
        "\n5. SCALE, sessions of ~1 KiB access token + refresh token + ~1 KiB id_token, 30-day expiry (populated offline through tokd_daemon::store)\n",
    );
    let _ = writeln!(
        t,
        "{:>8} {:>11} {:>10} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8} {:>10} {:>10} {:>8}",
        "sessions",
        "populate s",
        "start→get",
        "RSS",
        "PSS",
        "peak RSS",
        "disk",
        "status json",
        "add",
        "get p50",
        "get p99",
        "stop"
    );
    for &n in &s.scale {
        eprintln!("bench: scale: populating {have} → {n} sessions");
        let t_pop = Instant::now();
        if n > have {
            populate_offline(rt, &dir, have, n)?;
        }
        let populate_s = t_pop.elapsed().as_secs_f64();
        have = have.max(n);

        eprintln!("bench: scale: starting the daemon on {n} sessions");
        let t0 = Instant::now();
        let mut d = Daemon::spawn(bins, &dir)?;
        let sp = d.socket_path();
        let first = scale_name(n - 1);
        d.wait_until(Duration::from_secs(300), || {
            tokd::blocking::get_from(&sp, get_request(&first, 10_000)).is_ok()
        })?;
        let start_ms = t0.elapsed().as_secs_f64() * 1000.0;
        std::thread::sleep(Duration::from_millis(300));
        let pid = d.pid();
        let (rss, pss) = smaps_rollup(pid)?;

        // get latency over one connection, random sessions.
        let lat = rt.block_on(async {
            let mut c = connect(&sp, "tokd-bench-scale").await?;
            let mut rng = Rng::new(n as u64);
            let mut ns = Vec::with_capacity(s.scale_gets);
            for _ in 0..s.scale_gets {
                let req = get_request(&scale_name(rng.below(n)), 10_000);
                let t = Instant::now();
                c.get_with(req).await?;
                ns.push(elapsed_ns(t));
            }
            anyhow::Ok(stats(ns))
        })?;

        // `tokd status --json`, timed as a whole process.
        let mut status_ms = Vec::new();
        let mut status_bytes = 0;
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        for run in 0..s.status_runs {
            let t = Instant::now();
            let out = d
                .tokd(bins, &["status", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()?;
            status_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            status_bytes = out.stdout.len();
            if run == 0 {
                let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
                    format!(
                        "status --json is not JSON: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })?;
                for sess in v["sessions"].as_array().map_or(&[][..], Vec::as_slice) {
                    *states
                        .entry(sess["state"].as_str().unwrap_or("?").to_owned())
                        .or_default() += 1;
                }
            }
        }
        let hwm = status_kb(pid, "VmHWM:")?;
        let add_ms = time_adds(&d, bins, n, s.scale_adds)?;
        let (disk, apparent) = disk_usage(&dir.join("state"));
        let stop = d.stop()?;
        let valid = states.get("valid").copied().unwrap_or(0);
        let row = format!(
            "{:>8} {:>11.1} {:>8.0}ms {:>9} {:>9} {:>9} {:>9} {:>10.0}ms {:>6.2}ms {:>8.1}µs {:>8.1}µs {:>6.0}ms{}",
            n,
            populate_s,
            start_ms,
            mib(rss),
            mib(pss),
            mib(hwm),
            mib(disk / 1024),
            median(&status_ms),
            median(&add_ms),
            lat.p50_us,
            lat.p99_us,
            stop.as_secs_f64() * 1000.0,
            if valid == n {
                String::new()
            } else {
                format!("  (!) states {states:?}")
            }
        );
        eprintln!("{row}");
        let _ = writeln!(t, "{row}");
        rows.push(json!({
            "sessions": n, "populate_s": populate_s, "start_to_first_get_ms": start_ms,
            "rss_kb": rss, "pss_kb": pss, "vm_hwm_kb_after_status": hwm,
            "disk_bytes": disk, "disk_apparent_bytes": apparent,
            "status_json_ms": status_ms, "status_json_bytes": status_bytes, "add_ms": add_ms,
            "status_states": states, "get": lat, "stop_ms": stop.as_secs_f64() * 1000.0,
        }));
    }
    let _ = write!(
        t,
        "(start→get: spawn to the first successful one-shot get; RSS/PSS 0.3 s after that; peak RSS after `status --json`; add: median of one-shot `tokd add` processes importing a new session, each removed again afterwards; disk: allocated bytes of the state dir; stop: SIGTERM to exit)"
    );
    report.text_line(&t);
    report.json.insert("scale".into(), Value::Array(rows));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 6–7. Refresh storm

#[derive(Default)]
struct EndpointStats {
    requests: AtomicU64,
    in_flight: AtomicI64,
    max_in_flight: AtomicI64,
    malformed: AtomicU64,
    first_ms: AtomicI64,
    last_ms: AtomicI64,
    seen_refresh_tokens: Mutex<HashSet<String>>,
    /// Indices of the imported refresh tokens (`rt-{i}-…`) that reached the endpoint.
    seen_imported: Mutex<HashSet<usize>>,
    reused_refresh_tokens: AtomicU64,
}

impl EndpointStats {
    fn note_refresh_token(&self, rt: &str) {
        let fresh = self
            .seen_refresh_tokens
            .lock()
            .map(|mut s| s.insert(rt.to_owned()))
            .unwrap_or(true);
        if !fresh {
            self.reused_refresh_tokens.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(i) = rt
            .strip_prefix("rt-")
            .and_then(|r| r.split_once('-'))
            .and_then(|(i, _)| i.parse::<usize>().ok())
            && let Ok(mut seen) = self.seen_imported.lock()
        {
            seen.insert(i);
        }
    }
}

/// A minimal HTTP/1.1 token endpoint: every POST gets a fresh 1 h token and a new unique
/// refresh token, after `delay`.
async fn token_endpoint(
    listener: tokio::net::TcpListener,
    stats: Arc<EndpointStats>,
    delay: Duration,
) {
    let access = Arc::new(jwt("at", 42, epoch_ms() + 3_600_000, 1024));
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(http_connection(
            stream,
            stats.clone(),
            delay,
            access.clone(),
        ));
    }
}

async fn http_connection(
    mut stream: tokio::net::TcpStream,
    stats: Arc<EndpointStats>,
    delay: Duration,
    access: Arc<String>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
        buf.drain(..head_end + len);

        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let n = stats.requests.fetch_add(1, Ordering::SeqCst);
        let t = epoch_ms();
        let _ = stats
            .first_ms
            .compare_exchange(0, t, Ordering::SeqCst, Ordering::SeqCst);
        stats.last_ms.fetch_max(t, Ordering::SeqCst);
        match body
            .split('&')
            .find_map(|kv| kv.strip_prefix("refresh_token="))
        {
            Some(rt) => stats.note_refresh_token(rt),
            None => {
                stats.malformed.fetch_add(1, Ordering::SeqCst);
            }
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let json = format!(
            r#"{{"access_token":"{access}","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-new-{n}-{:016x}"}}"#,
            Rng::new(n).next()
        );
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        let w = stream.write_all(resp.as_bytes()).await;
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        w?;
    }
}

#[derive(Debug, Default, Clone)]
struct ProbeResult {
    ns: Vec<u64>,
    errors: usize,
    past_expiry: usize,
    first_error: Option<String>,
}

/// One connection asking for a random session every `period` (min_valid 0: the cached
/// token, so the probe causes no refresh), checking that no answer is already expired.
/// Results accumulate in `out`, so a probe stuck on a hung daemon can simply be aborted.
async fn probe(
    socket: SocketPath,
    names: Arc<Vec<String>>,
    period: Duration,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<ProbeResult>>,
) -> Result<()> {
    let mut c = connect(&socket, "tokd-bench-probe").await?;
    let mut rng = Rng::new(99);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let name = &names[rng.below(names.len())];
        let t = Instant::now();
        let answer = c.get_with(get_request(name, 0)).await;
        let ns = elapsed_ns(t);
        let mut r = out
            .lock()
            .map_err(|_| anyhow::anyhow!("probe results poisoned"))?;
        r.ns.push(ns);
        match answer {
            Ok(tok) => {
                if tok.expires_at_ms <= epoch_ms() {
                    r.past_expiry += 1;
                }
            }
            Err(e) => {
                r.errors += 1;
                if r.first_error.is_none() {
                    r.first_error = Some(format!("{name}: {e}"));
                }
            }
        }
    }
    Ok(())
}

/// Runs [`probe`] until `stop` is set; returns its handle and result cell.
struct Probe {
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<ProbeResult>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Probe {
    fn start(rt: &tokio::runtime::Runtime, socket: &SocketPath, names: &Arc<Vec<String>>) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let out = Arc::new(Mutex::new(ProbeResult::default()));
        let task = rt.spawn(probe(
            socket.clone(),
            names.clone(),
            Duration::from_millis(1),
            stop.clone(),
            out.clone(),
        ));
        Probe { stop, out, task }
    }

    /// Stops the probe (aborting it after 2 s if a request hangs) and returns its results.
    fn finish(self, rt: &tokio::runtime::Runtime) -> Result<ProbeResult> {
        self.stop.store(true, Ordering::SeqCst);
        let mut task = self.task;
        let joined =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), &mut task).await });
        match joined {
            Ok(r) => r??,
            Err(_) => {
                task.abort();
                eprintln!("bench: the probe hung on a request; aborted");
            }
        }
        let r = self
            .out
            .lock()
            .map_err(|_| anyhow::anyhow!("probe results poisoned"))?
            .clone();
        Ok(r)
    }
}

/// Runs a command with stdout into `out_file` (a pipe nobody drains would block a large
/// answer), killing it after `limit`; returns its stdout, or `None` on timeout.
fn output_within(cmd: &mut Command, out_file: &Path, limit: Duration) -> Result<Option<Vec<u8>>> {
    let file = std::fs::File::create(out_file)?;
    let mut child = cmd.stdout(file).stderr(Stdio::null()).spawn()?;
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(Some(std::fs::read(out_file)?));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What every thread of `pid` is blocked in (`comm: wchan`), counted.
fn thread_states(pid: u32) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for entry in entries.flatten() {
            let read = |f: &str| {
                std::fs::read_to_string(entry.path().join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            let comm = read("comm");
            let comm = comm.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
            *counts
                .entry(format!("{comm}: {}", read("wchan")))
                .or_default() += 1;
        }
    }
    counts
        .iter()
        .map(|(k, v)| format!("{v}× {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn storm_section(
    report: &mut Report,
    rt: &tokio::runtime::Runtime,
    bins: &Bins,
    root: &Path,
    s: &Settings,
) -> Result<()> {
    let n = s.storm_sessions;
    let (lo, hi) = s.storm_lifetime;
    let dir = root.join("storm");
    let ep = Arc::new(EndpointStats::default());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let endpoint = rt.spawn(token_endpoint(listener, ep.clone(), s.endpoint_delay));
    let global_limit = 16;
    let provider_limit = 16;
    let providers = format!(
        "[providers.storm]\ntoken_endpoint = \"http://127.0.0.1:{port}/token\"\nclient_id = \"tokd-bench\"\n\
         refresh_ahead = \"60s\"\nmax_concurrent_refreshes = {provider_limit}\n"
    );
    let mut d = Daemon::start(
        bins,
        &dir,
        &format!("max_concurrent_refreshes = {global_limit}"),
        &providers,
    )?;
    let pid = d.pid();
    let sp = d.socket_path();

    // Import through the socket over 4 connections; lifetimes spread evenly over lo..=hi.
    eprintln!("bench: storm: importing {n} sessions (lifetimes {lo}-{hi} s)");
    let names: Arc<Vec<String>> = Arc::new((0..n).map(|i| format!("storm{i:05}")).collect());
    let t_import = Instant::now();
    let expiries: Vec<i64> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let lanes = 4;
        for lane in 0..lanes {
            let names = names.clone();
            let sp = sp.clone();
            tasks.spawn(async move {
                let mut c = connect(&sp, "tokd-bench-import").await?;
                let mut rng = Rng::new(lane as u64 + 1000);
                let mut out = Vec::new();
                for i in (lane..names.len()).step_by(lanes) {
                    let life = lo + (hi - lo) * i as u64 / (names.len().max(2) - 1) as u64;
                    let reply = c
                        .add(AddRequest {
                            name: names[i].clone(),
                            provider: "storm".into(),
                            attrs: Vec::new(),
                            replace: false,
                            token_response: Some(Secret::new(token_response(i, life, &mut rng))),
                        })
                        .await
                        .with_context(|| format!("adding {}", names[i]))?;
                    out.push((i, reply.session.expires_at_ms.unwrap_or(0)));
                }
                anyhow::Ok(out)
            });
        }
        let mut all = vec![0; names.len()];
        while let Some(r) = tasks.join_next().await {
            for (i, exp) in r?? {
                all[i] = exp;
            }
        }
        anyhow::Ok(all)
    })?;
    let import_s = t_import.elapsed().as_secs_f64();
    let import_end_ms = epoch_ms();
    let refreshed_during_import = ep.requests.load(Ordering::SeqCst);

    // The storm, with a probe asking every millisecond. A session whose token expired without
    // its refresh token reaching the endpoint means the daemon stopped refreshing: after 5 s
    // of that the storm is declared stalled.
    let cpu0 = cpu_ms(pid)?;
    let t0 = Instant::now();
    let storm_probe = Probe::start(rt, &sp, &names);
    let limit = Duration::from_secs(hi + 60);
    let mut last_report = Instant::now();
    let mut missing_since: Option<Instant> = None;
    let mut stall: Option<String> = None;
    loop {
        let done = ep.requests.load(Ordering::SeqCst);
        if done >= n as u64 && ep.in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        if t0.elapsed() > limit {
            stall = Some(format!(
                "timed out after {limit:?} with {done}/{n} refreshes"
            ));
            break;
        }
        let now = epoch_ms();
        let missed = ep.seen_imported.lock().map_or(0, |seen| {
            expiries
                .iter()
                .enumerate()
                .filter(|(i, exp)| **exp + 1000 < now && !seen.contains(i))
                .count()
        });
        if missed == 0 {
            missing_since = None;
        } else if missing_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(5)
        {
            stall = Some(format!(
                "STALLED: {missed} sessions expired without a refresh request; {done}/{n} requests so far, {} in flight at the endpoint; daemon threads: {}",
                ep.in_flight.load(Ordering::SeqCst),
                thread_states(pid)
            ));
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "bench: storm: {done}/{n} refreshes, {} in flight",
                ep.in_flight.load(Ordering::SeqCst)
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(why) = &stall {
        eprintln!("bench: storm: {why}");
    }
    // Let the last answers be committed.
    let committed = stall.is_none()
        && rt.block_on(async {
            let mut c = connect(&sp, "tokd-bench").await?;
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let st = c.status(None).await?;
                let left = st.sessions.iter().filter(|x| x.refresh_count == 0).count();
                if left == 0 || Instant::now() > deadline {
                    return anyhow::Ok(left == 0);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })?;
    let storm_wall = t0.elapsed();
    let storm_probe = storm_probe.finish(rt)?;
    let cpu1 = cpu_ms(pid)?;

    // Verify through the CLI.
    let t_status = Instant::now();
    let out = output_within(
        &mut d.tokd(bins, &["status", "--json"]),
        &dir.join("status.json"),
        Duration::from_secs(30),
    )?;
    let status_ms = t_status.elapsed().as_secs_f64() * 1000.0;
    let v: Value = out
        .and_then(|o| serde_json::from_slice(&o).ok())
        .unwrap_or(Value::Null);
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let (mut invalid, mut unrefreshed, mut late) = (0, 0, 0);
    let mut max_count = 0;
    let mut margin_ms = Vec::new();
    for sess in v["sessions"].as_array().map_or(&[][..], Vec::as_slice) {
        *states
            .entry(sess["state"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
        if sess["token_valid"] != Value::Bool(true) {
            invalid += 1;
        }
        let count = sess["refresh_count"].as_u64().unwrap_or(0);
        max_count = max_count.max(count);
        if count == 0 {
            unrefreshed += 1;
        }
        let idx = sess["name"]
            .as_str()
            .and_then(|name| name.strip_prefix("storm"))
            .and_then(|i| i.parse::<usize>().ok());
        if let (Some(exp), Some(at)) = (
            idx.and_then(|i| expiries.get(i)),
            sess["last_refresh_at"].as_i64(),
        ) {
            // With one refresh each, the last refresh is the first one.
            if count == 1 {
                margin_ms.push((exp - at) as f64);
                if at > *exp {
                    late += 1;
                }
            }
        }
    }

    // Idle baseline on the same daemon and sessions, same probe.
    let (idle_probe, idle_cpu) = if stall.is_none() {
        eprintln!(
            "bench: storm: idle probe ({:.0} s)",
            s.idle_probe.as_secs_f64()
        );
        let cpu_i0 = cpu_ms(pid)?;
        let p = Probe::start(rt, &sp, &names);
        std::thread::sleep(s.idle_probe);
        let r = p.finish(rt)?;
        (r, cpu_ms(pid)?.saturating_sub(cpu_i0) as f64)
    } else {
        (ProbeResult::default(), f64::NAN)
    };
    let log = d.log();
    if stall.is_some() {
        eprintln!(
            "bench: storm: killing the stalled daemon (its log: {}/daemon.log; run with --keep to keep it)",
            dir.display()
        );
        d.kill();
    } else {
        d.stop()?;
    }
    endpoint.abort();

    let requests = ep.requests.load(Ordering::SeqCst);
    let peak = ep.max_in_flight.load(Ordering::SeqCst);
    let span_s =
        (ep.last_ms.load(Ordering::SeqCst) - ep.first_ms.load(Ordering::SeqCst)) as f64 / 1000.0;
    let first_after_import_s = (ep.first_ms.load(Ordering::SeqCst) - import_end_ms) as f64 / 1000.0;
    let storm_cpu = cpu1.saturating_sub(cpu0) as f64;
    let cpu_per_get = idle_cpu / idle_probe.ns.len().max(1) as f64;
    let storm_gets = storm_probe.ns.len();
    let cpu_refreshes = (storm_cpu - cpu_per_get * storm_gets as f64).max(0.0);
    let refreshes = requests.saturating_sub(refreshed_during_import).max(1) as f64;
    let min_margin = margin_ms.iter().copied().fold(f64::INFINITY, f64::min);
    let sp_stats = stats(storm_probe.ns.clone());
    let ip_stats = stats(idle_probe.ns.clone());
    let audit_refreshed = log.matches("event=\"refreshed\"").count();
    let reused = ep.reused_refresh_tokens.load(Ordering::SeqCst);
    let malformed = ep.malformed.load(Ordering::SeqCst);
    let ok_all = stall.is_none()
        && committed
        && invalid == 0
        && unrefreshed == 0
        && late == 0
        && states.get("valid").copied().unwrap_or(0) == n
        && storm_probe.past_expiry == 0
        && storm_probe.errors == 0
        && reused == 0;

    let mut t = format!(
        "\n6. REFRESH STORM, {n} sessions, token lifetimes {lo}-{hi} s, refresh_ahead 60 s, local HTTP token endpoint answering after {} ms\n",
        s.endpoint_delay.as_millis()
    );
    if let Some(why) = &stall {
        let _ = writeln!(t, "(!) {why}");
    }
    let _ = writeln!(
        t,
        "import: {import_s:.1} s through the socket ({:.2} ms/session, 4 connections); {refreshed_during_import} refreshes already during the import",
        import_s * 1000.0 / n as f64
    );
    let _ = writeln!(
        t,
        "refreshes: {requests} requests at the endpoint (sessions: {n}; max refresh_count {max_count}), first {first_after_import_s:.1} s after the import, spread over {span_s:.1} s; storm wall time {:.1} s",
        storm_wall.as_secs_f64()
    );
    let _ = writeln!(
        t,
        "result: {} — states {states:?}, token invalid {invalid}, never refreshed {unrefreshed}, refreshed after expiry {late}, min margin before expiry {:.1} s; probe: {} answers past expiry, {} errors{}; refresh tokens reused {reused}, malformed requests {malformed}; audit lines event=\"refreshed\": {audit_refreshed}",
        if ok_all { "OK" } else { "FAILED" },
        min_margin / 1000.0,
        storm_probe.past_expiry,
        storm_probe.errors,
        storm_probe
            .first_error
            .as_deref()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    );
    let _ = writeln!(
        t,
        "concurrency: peak {peak} requests in flight at the endpoint; limits: global max_concurrent_refreshes {global_limit}, provider {provider_limit} → {}",
        if peak <= global_limit {
            "respected"
        } else {
            "EXCEEDED"
        }
    );
    let _ = writeln!(
        t,
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "get latency, 1 conn, 1 req/ms", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "n"
    );
    for (label, st) in [
        ("during the storm", &sp_stats),
        ("idle (after it, same sessions)", &ip_stats),
    ] {
        if st.n == 0 {
            let _ = writeln!(t, "{label:<34} not measured");
            continue;
        }
        let _ = writeln!(
            t,
            "{label:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8}",
            st.p50_us, st.p99_us, st.p999_us, st.max_us, st.n
        );
    }
    let _ = writeln!(
        t,
        "storm p99 / idle p99: {:.2}; status --json after the storm: {status_ms:.0} ms",
        sp_stats.p99_us / ip_stats.p99_us
    );
    if stall.is_none() {
        let _ = write!(
            t,
            "\n7. CPU PER REFRESH (no TLS): daemon utime+stime {storm_cpu:.0} ms during the storm; minus the probe's gets ({storm_gets} × {cpu_per_get:.4} ms, measured idle) = {cpu_refreshes:.0} ms for {refreshes:.0} refreshes → {:.0} µs per refresh (raw, probe included: {:.0} µs; /proc resolution 10 ms)",
            cpu_refreshes * 1000.0 / refreshes,
            storm_cpu * 1000.0 / refreshes
        );
    } else {
        let _ = write!(
            t,
            "\n7. CPU PER REFRESH: not measured, the storm stalled (daemon utime+stime {storm_cpu:.0} ms for {refreshes:.0} refreshes and {storm_gets} probe gets)"
        );
    }
    report.text_line(&t);
    if !ok_all {
        report.failures.push(match &stall {
            Some(why) => format!("refresh storm: {why}"),
            None => "refresh storm: verification failed (see section 6)".to_owned(),
        });
    }
    report.json.insert(
        "storm".into(),
        json!({
            "sessions": n, "lifetime_s": [lo, hi], "endpoint_delay_ms": s.endpoint_delay.as_millis() as u64,
            "stall": stall,
            "import_s": import_s, "refreshed_during_import": refreshed_during_import,
            "endpoint_requests": requests, "peak_in_flight": peak,
            "limit_global": global_limit, "limit_provider": provider_limit,
            "first_refresh_after_import_s": first_after_import_s, "refresh_span_s": span_s,
            "storm_wall_s": storm_wall.as_secs_f64(), "all_committed": committed,
            "states": states, "token_invalid": invalid, "never_refreshed": unrefreshed,
            "refreshed_after_expiry": late, "min_margin_before_expiry_ms": min_margin,
            "max_refresh_count": max_count,
            "probe_past_expiry": storm_probe.past_expiry, "probe_errors": storm_probe.errors,
            "probe_first_error": storm_probe.first_error,
            "refresh_tokens_reused": reused, "malformed_requests": malformed,
            "audit_refreshed_lines": audit_refreshed,
            "get_during_storm": sp_stats, "get_idle_after": ip_stats,
            "status_json_ms": status_ms,
            "cpu_ms_storm": storm_cpu, "cpu_ms_per_get_idle": cpu_per_get,
            "cpu_us_per_refresh": cpu_refreshes * 1000.0 / refreshes,
            "cpu_us_per_refresh_raw": storm_cpu * 1000.0 / refreshes,
            "ok": ok_all,
        }),
    );
    Ok(())
}
