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
            "CUSTOMER",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("OWNER, ADMIN or MEMBER"));
}

/// Runs `chronicle tenant <action> --tenant <tenant> --data-dir <dir>`; its JSON line.
fn tenant_cli(action: &str, tenant: &str, dir: &std::path::Path) -> serde_json::Value {
    let out = Command::new(chronicle_bin())
        .args(["tenant", action, "--tenant", tenant, "--data-dir"])
        .arg(dir)
        .output()
        .expect("run chronicle tenant");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[tokio::test]
async fn an_operator_suspends_and_reactivates_a_tenant_of_a_running_server() {
    use chronicle_tests::process::{Http, Server};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), "cli-test-secret-cli-test-secret-0123");
    let http = Http::default();
    let signup = serde_json::json!({
        "company_name": "Acme",
        "admin_email": "root@acme.test",
        "admin_password": chronicle_tests::PASSWORD,
    });
    let created = http
        .send(
            "POST",
            &server.url("/tenants"),
            "",
            &[],
            Some(signup.to_string()),
        )
        .await
        .expect("POST /tenants");
    assert_eq!(created.status, 201, "{:?}", created.body);
    let tenant = created.body["tenant_id"]
        .as_str()
        .expect("tenant")
        .to_owned();
    let token = created.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned();

    let shown = tenant_cli("show", &tenant, dir.path());
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["users"], 1);

    let suspended = tenant_cli("suspend", &tenant, dir.path());
    assert_eq!(suspended["status"], "suspended");
    let within = std::time::Duration::from_secs(10);
    let refused = http
        .get_until(&server.url("/tasks"), &token, 403, within)
        .await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(
        refused.body["type"],
        "urn:chronicle:problem:tenant-suspended"
    );

    let back = tenant_cli("reactivate", &tenant, dir.path());
    assert_eq!(back["status"], "active");
    let ok = http
        .get_until(&server.url("/tasks"), &token, 200, within)
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);

    let missing = Command::new(chronicle_bin())
        .args(["tenant", "suspend", "--tenant", "nobody", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!missing.status.success(), "an unknown tenant is an error");
    server.stop();
}
