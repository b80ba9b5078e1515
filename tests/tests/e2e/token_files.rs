//! Token files: `[sessions.NAME] file = …` sinks kept in step with the session by the real
//! daemon against the real provider.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokd_e2e::idp::TestIdp;
use tokd_e2e::{Launch, TestDaemon, idp_provider, refresh_token_of, stderr, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn config(idp: &TestIdp, file: &str) -> String {
    format!(
        "{}[sessions.s]\nfile = \"{file}\"\n",
        idp_provider("idp", idp.issuer(), "")
    )
}

/// A daemon whose `$XDG_RUNTIME_DIR` exists, as it does for a logged-in user.
fn daemon(extra: &str) -> TestDaemon {
    TestDaemon::launch(extra, Launch::default(), |dir| {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.join("xdg-run"))?;
        Ok(())
    })
    .expect("daemon starts")
}

fn wlcg_path(d: &TestDaemon) -> PathBuf {
    let uid = rustix::process::getuid().as_raw();
    d.dir.path().join(format!("xdg-run/bt_u{uid}"))
}

fn wait_for_content(path: &Path, want: &str) {
    wait_for(
        WAIT,
        &format!("{} to hold the token", path.display()),
        || (std::fs::read_to_string(path).ok()? == want).then_some(()),
    );
}

fn wait_for_absence(path: &Path) {
    wait_for(WAIT, &format!("{} to be removed", path.display()), || {
        (!path.exists()).then_some(())
    });
}

#[test]
fn a_token_file_follows_every_refresh_and_goes_away_with_the_session() {
    let idp = TestIdp::start().expect("idp");
    let d = daemon(&config(&idp, "$XDG_RUNTIME_DIR/bt_u$UID"));
    let path = wlcg_path(&d);
    d.add_as(
        "s",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    let first = d.get("s", &[]).expect("token");
    wait_for_content(&path, &first);
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a token file is private");

    let out = d.tokd(&["refresh", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = d.get("s", &[]).expect("token");
    assert_ne!(first, second, "the provider issued a new token");
    wait_for_content(&path, &second);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tokd-token-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    let out = d.tokd(&["rm", "s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for_absence(&path);
    assert!(!d.log().contains(&second), "the log never holds the token");
}

#[test]
fn a_session_that_needs_a_login_loses_its_token_file_also_across_a_restart() {
    let idp = TestIdp::start().expect("idp");
    let mut d = daemon(&config(&idp, "$XDG_RUNTIME_DIR/bt_u$UID"));
    let path = wlcg_path(&d);
    let minted = idp
        .mint("tokd-test", "openid offline_access api")
        .expect("mint");
    d.add_as("s", "idp", &minted);
    wait_for_content(&path, &d.get("s", &[]).expect("token"));

    idp.revoke_grant(&refresh_token_of(&minted))
        .expect("revoke");
    let out = d.tokd(&["refresh", "s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(d.session_json("s")["state"], "needs_login");
    wait_for_absence(&path);

    // A stale file planted at the sink (say, restored from a backup) is not left standing
    // for a session that needs a login.
    std::fs::write(&path, "stale").expect("plant");
    d.restart().expect("restarts");
    wait_for_absence(&path);
}

#[test]
fn a_reload_moves_the_token_file() {
    let idp = TestIdp::start().expect("idp");
    let mut d = daemon(&config(&idp, "$XDG_RUNTIME_DIR/old"));
    let old = d.dir.path().join("xdg-run/old");
    let new = d.dir.path().join("xdg-run/new");
    d.add_as(
        "s",
        "idp",
        &idp.mint("tokd-test", "openid offline_access api")
            .expect("mint"),
    );
    let token = d.get("s", &[]).expect("token");
    wait_for_content(&old, &token);

    d.set_extra_config(&config(&idp, "$XDG_RUNTIME_DIR/new"))
        .expect("config");
    d.signal(rustix::process::Signal::HUP);
    wait_for_content(&new, &token);
    wait_for_absence(&old);
}

#[test]
fn a_token_file_next_to_an_access_list_is_refused_at_start() {
    let extra = "[sessions.s]\nfile = \"/tmp/x\"\nallow_exe = [\"/usr/bin/git\"]\n";
    let err = TestDaemon::start_with(extra).expect_err("refused");
    let text = format!("{err:#}");
    assert!(text.contains("[sessions.s]"), "{text}");
    assert!(text.contains("protect nothing"), "{text}");
}
