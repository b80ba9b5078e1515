//! `tokd-daemon`: flags → logging → config → store → socket → [`tokd_daemon::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokd_daemon::config::{Config, Overrides};
use tokd_daemon::server::socket;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Keeps OAuth2 / OpenID Connect sessions alive and serves their bearer tokens over a Unix
/// socket. Runs with no configuration at all.
#[derive(Debug, Parser)]
#[command(name = "tokd-daemon", version, about)]
struct Cli {
    /// Config file (default: $XDG_CONFIG_HOME/tokd/config.toml, if it exists).
    #[arg(long, env = "TOKD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Socket path (default: $XDG_RUNTIME_DIR/tokd/tokd.sock, else /run/user/$UID/tokd/tokd.sock
    /// when that directory is the user's, else ${TMPDIR:-/tmp}/tokd-$UID/tokd.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// State directory holding the encrypted database (default: $STATE_DIRECTORY under
    /// systemd, else $XDG_STATE_HOME/tokd).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Print a systemd user unit (with this binary's path) and exit.
    #[arg(long, value_name = "UNIT", value_enum)]
    print_unit: Option<Unit>,
}

/// The systemd units `--print-unit` can print.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Unit {
    /// tokd.service (Type=notify, hardened).
    Service,
    /// tokd.socket (socket activation).
    Socket,
}

const SERVICE_UNIT: &str = include_str!("../../systemd/tokd.service");
const SOCKET_UNIT: &str = include_str!("../../systemd/tokd.socket");
/// Where the committed service unit expects the binary (`cargo install`'s default).
const UNIT_EXEC_PATH: &str = "%h/.cargo/bin/tokd-daemon";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(unit) = cli.print_unit {
        print_unit(unit);
        return ExitCode::SUCCESS;
    }
    // Everything the daemon creates is private, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let overrides = Overrides {
        config_file: cli.config,
        socket: cli.socket,
        state_dir: cli.state_dir,
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tokd-daemon: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log.as_deref());
    // Taken after logging is set up, so that its warnings are seen. SAFETY: no other thread
    // exists yet (no runtime; logging writes to stderr from the calling thread), and this is
    // the only call.
    #[allow(unsafe_code)]
    let activated = match unsafe { tokd_daemon::systemd::take_activated_listener() } {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tokd-daemon: {e}");
            return ExitCode::from(1);
        }
    };
    harden_process(config.allow_core_dumps);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tokd-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokd-daemon: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(config, overrides, activated)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, once: logging writes to the same stderr.
            eprintln!("tokd-daemon: {e:#}");
            ExitCode::from(
                e.downcast_ref::<tokd_daemon::DaemonError>()
                    .map_or(1, |d| d.exit_code()),
            )
        }
    }
}

async fn serve(
    config: Config,
    overrides: Overrides,
    activated: Option<std::os::unix::net::UnixListener>,
) -> anyhow::Result<()> {
    let socket_config = config.socket.clone();
    if activated.is_none() {
        // A live daemon on the socket is the clearest reason to stop: check before the store.
        socket::refuse_if_running(&socket_config.path)?;
    }
    let state = tokd_daemon::open(config)?;
    let (listener, guard) = match activated {
        // systemd owns that socket: serve it, never unlink it.
        Some(std_listener) => {
            let listener = tokio::net::UnixListener::from_std(std_listener)?;
            let path = listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default();
            tracing::info!(socket = %path, "using the socket passed by systemd");
            (listener, None)
        }
        None => {
            let bound = socket::bind(&socket_config)?;
            (bound.listener, Some(bound.guard))
        }
    };
    tracing::info!(
        pid = std::process::id(),
        version = env!("CARGO_PKG_VERSION"),
        "tokd-daemon ready"
    );

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), state.clone(), overrides)?;
    tokd_daemon::run(state, listener, shutdown).await?;
    drop(guard);
    Ok(())
}

/// SIGTERM/SIGINT stop the daemon; SIGHUP reloads the config (a broken one is rejected and
/// the old one stays).
fn spawn_signal_handler(
    shutdown: CancellationToken,
    state: std::sync::Arc<tokd_daemon::DaemonState>,
    overrides: Overrides,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
                _ = int.recv() => { tracing::info!("SIGINT received"); break; }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: reloading the config");
                    if let Err(e) = tokd_daemon::reload(&state, &overrides) {
                        tracing::error!(error = %e, "config reload rejected; the old config stays in force");
                    }
                }
            }
        }
        shutdown.cancel();
        // A second SIGTERM/SIGINT during a slow shutdown means "now".
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second stop signal: exiting without waiting for refreshes in flight");
        std::process::exit(1);
    });
    Ok(())
}

fn print_unit(unit: Unit) {
    let text = match unit {
        Unit::Service => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| UNIT_EXEC_PATH.to_owned());
            SERVICE_UNIT.replace(UNIT_EXEC_PATH, &exe)
        }
        Unit::Socket => SOCKET_UNIT.to_owned(),
    };
    print!("{text}");
}

/// No core dumps and no ptrace attachment by other processes of the user (the memory holds
/// every token), unless the config allows it; and the soft open-files limit raised to the
/// hard one, so the connection cap, not the descriptor limit, is what bounds clients.
fn harden_process(allow_core_dumps: bool) {
    use rustix::process::{
        DumpableBehavior, Resource, getrlimit, set_dumpable_behavior, setrlimit,
    };
    if !allow_core_dumps && let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot make the process non-dumpable");
    }
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum
        && limit.current.is_some_and(|cur| cur < max)
    {
        let raised = rustix::process::Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(open_files = max, "raised the soft open-files limit"),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
        }
    }
}

fn init_logging(config_filter: Option<&str>) {
    let filter = std::env::var("TOKD_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .or_else(|| config_filter.map(str::to_owned))
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("tokd-daemon: invalid log filter {filter:?} ({e}); using \"info\"");
        EnvFilter::new("info")
    });
    // Under systemd the journal adds its own timestamps and shows no colours.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
