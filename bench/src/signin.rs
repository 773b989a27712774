//! `chronicle-bench signin`: sign-in latency by outcome, to show that a wrong password and
//! an unknown email cost the same (both verify one argon2id hash) and what a sign-in costs.

use commands::{AccessService, CommandHandler};
use domain::tenant::CompanyName;
use domain::user::Email;
use domain::{TenantId, Tier};
use infra::SystemClock;
use infra::sqlite::SqliteEventStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery staple";

pub async fn run(rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteEventStore::open(&dir.path().join("events.db"))?);
    let access = AccessService::new(CommandHandler::new(store, Arc::new(SystemClock)));
    let started = Instant::now();
    let signed = access
        .register_tenant(
            commands::RequestIds::fresh(),
            CompanyName::parse("Bench")?,
            Email::parse("root@bench.test")?,
            PASSWORD.to_owned(),
            Tier::Basic,
        )
        .await?;
    println!(
        "sign-up (tenant + admin + session, one argon2id hash): {:.1} ms",
        super::ms(started.elapsed())
    );
    let tenant: TenantId = signed.tenant_id;
    let known = Email::parse("root@bench.test")?;
    let unknown = Email::parse("nobody@bench.test")?;
    let cases: [(&str, &Email, &str); 3] = [
        ("correct password", &known, PASSWORD),
        ("wrong password", &known, "not the password"),
        ("unknown email", &unknown, PASSWORD),
    ];
    println!("{rounds} sign-ins per case, interleaved:");
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, email, password)) in cases.iter().enumerate() {
            let t = Instant::now();
            let outcome = access
                .sign_in(
                    commands::RequestIds::fresh(),
                    &tenant,
                    email,
                    (*password).to_owned(),
                )
                .await;
            times[i].push(t.elapsed());
            anyhow::ensure!(
                outcome.is_ok() == (i == 0),
                "unexpected outcome for case {i}"
            );
        }
    }
    for ((name, _, _), mut t) in cases.iter().zip(times) {
        t.sort();
        println!(
            "  {name:<17} p50 {:6.1} ms   p99 {:6.1} ms",
            super::ms(super::percentile(&t, 0.5)),
            super::ms(super::percentile(&t, 0.99))
        );
    }
    Ok(())
}
