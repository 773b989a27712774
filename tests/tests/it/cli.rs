//! The `chronicle` binary's command line: `token` prints a valid token alone on stdout, and
//! a generated secret is kept private in the data dir and reused.

use chronicle_tests::process::chronicle_bin;
use std::process::Command;

#[test]
fn token_prints_only_a_token_that_the_server_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = || {
        Command::new(chronicle_bin())
            .args([
                "token",
                "--tenant",
                "acme",
                "--user",
                "alice",
                "--role",
                "member",
                "--ttl",
                "15m",
                "--data-dir",
            ])
            .arg(dir.path())
            .env_remove("CHRONICLE_JWT_SECRET")
            .output()
            .expect("run chronicle token")
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let token = stdout.trim_end_matches('\n');
    assert_eq!(stdout.lines().count(), 1, "the token alone: {stdout:?}");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    let secret = std::fs::read_to_string(dir.path().join("jwt-secret"))
        .expect("secret kept in the data dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("jwt-secret"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let principal = api::TokenKeys::from_secret(secret.trim().as_bytes())
        .expect("keys")
        .verify(token)
        .expect("the token verifies with the kept secret");
    assert_eq!(principal.tenant_id.as_str(), "acme");
    assert_eq!(principal.actor.user_id.as_str(), "alice");
    assert!(!principal.is_admin());

    let again = run();
    let second = String::from_utf8(again.stdout).expect("utf-8");
    let keys = api::TokenKeys::from_secret(secret.trim().as_bytes()).expect("keys");
    assert!(
        keys.verify(second.trim()).is_ok(),
        "the same secret is reused"
    );

    let bad = Command::new(chronicle_bin())
        .args([
            "token",
            "--tenant",
            "acme",
            "--user",
            "alice",
            "--role",
            "OWNER",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ADMIN or MEMBER"));
}
