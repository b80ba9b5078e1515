//! A wall-clock jump (as after a suspend) while monotonic time stands still: the daemon runs
//! in-process on a clock that can jump, against the real provider and the real `tokd` CLI.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokd_daemon::clock::OffsetClock;
use tokd_daemon::testing::Fixture;
use tokd_e2e::idp::TestIdp;
use tokd_e2e::{idp_provider, isolate_env, run_with_stdin, wait_for};
use tokio_util::sync::CancellationToken;

struct InProcess {
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    served: Option<tokio::task::JoinHandle<Result<(), tokd_daemon::DaemonError>>>,
    clock: Arc<OffsetClock>,
    fixture: Fixture,
}

impl InProcess {
    fn start(idp: &TestIdp, daemon_table: &str) -> InProcess {
        let fixture = Fixture::open(
            None,
            "tokd-clock-",
            &format!("{daemon_table}\n{}", idp_provider("idp", idp.issuer(), "")),
        );
        let clock = fixture.clock.clone();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let shutdown = CancellationToken::new();
        let socket = tokd_protocol::paths::SocketPath {
            path: fixture.socket(),
            source: tokd_protocol::paths::SocketSource::Flag,
        };
        let state = fixture.state.clone();
        // Binding registers the listener with the runtime's reactor, so it happens inside.
        let bound = runtime.block_on(async { tokd_daemon::server::socket::bind(&socket) });
        let bound = bound.expect("binds");
        let token = shutdown.clone();
        let served = runtime.spawn(async move {
            let guard = bound.guard;
            let result = tokd_daemon::run(state, bound.listener, token).await;
            drop(guard);
            result
        });
        InProcess {
            runtime,
            shutdown,
            served: Some(served),
            clock,
            fixture,
        }
    }

    fn tokd(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = std::process::Command::new(&tokd_e2e::binaries().tokd);
        cmd.arg("--socket").arg(self.fixture.socket()).args(args);
        isolate_env(&mut cmd, Path::new(self.fixture.dir.path()));
        run_with_stdin(cmd, stdin)
    }

    fn get(&self) -> String {
        let out = self.tokd(&["get", "s", "--min-valid", "0s"], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(served) = self.served.take() {
            let _ = self.runtime.block_on(served);
        }
    }
}

fn setup(daemon_table: &str) -> (TestIdp, InProcess, String) {
    let idp = TestIdp::start().expect("provider");
    idp.set_access_ttl(600).expect("ttl");
    let d = InProcess::start(&idp, daemon_table);
    let minted = idp
        .mint("tokd-test", "openid offline_access api")
        .expect("mint");
    let out = d.tokd(&["add", "s", "--provider", "idp"], Some(&minted));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old = d.get();
    idp.reset_stats().expect("reset");
    (idp, d, old)
}

#[test]
fn get_never_serves_a_token_the_wall_clock_says_is_expired() {
    // The scheduler's own clock check is a minute away: only `get` can notice.
    let (idp, d, old) = setup("");
    d.clock.jump(2 * 3600 * 1000);
    let new = d.get();
    assert_ne!(
        new, old,
        "served the stale token after the wall clock jumped"
    );
    assert!(idp.is_active(&new).expect("introspect"));
    assert_eq!(idp.stats().expect("stats").refresh_requests, 1);
}

#[test]
fn the_scheduler_notices_a_jump_without_any_client() {
    let (idp, d, old) = setup("clock_check_interval = \"200ms\"");
    d.clock.jump(2 * 3600 * 1000);
    wait_for(Duration::from_secs(15), "a refresh after the jump", || {
        (idp.stats().expect("stats").refresh_requests >= 1).then_some(())
    });
    let new = d.get();
    assert_ne!(new, old);
    assert!(idp.is_active(&new).expect("introspect"));
}
