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
    /// Socket path (default: $XDG_RUNTIME_DIR/tokd/tokd.sock, else ${TMPDIR:-/tmp}/tokd-$UID/tokd.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// State directory holding the encrypted database (default: $XDG_STATE_HOME/tokd).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Everything the daemon creates is private, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));

    let config = match Config::load(&Overrides {
        config_file: cli.config,
        socket: cli.socket,
        state_dir: cli.state_dir,
    }) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tokd-daemon: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log.as_deref());

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
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tokd-daemon stopped");
            eprintln!("tokd-daemon: {e:#}");
            ExitCode::from(
                e.downcast_ref::<tokd_daemon::DaemonError>()
                    .map_or(1, |d| d.exit_code()),
            )
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // A live daemon on the socket is the clearest reason to stop: check before the store.
    socket::refuse_if_running(&config.socket.path)?;
    let socket_config = config.socket.clone();
    let state = tokd_daemon::open(config)?;
    let bound = socket::bind(&socket_config)?;
    tracing::info!(socket = %socket_config.path.display(), pid = std::process::id(), version = env!("CARGO_PKG_VERSION"), "tokd-daemon ready");

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    tokd_daemon::run(state, bound.listener, shutdown).await?;
    drop(bound.guard);
    Ok(())
}

fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    });
    Ok(())
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
