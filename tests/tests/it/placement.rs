//! `serve --pin-threads`: where the running binary's threads may run, read from /proc.
#![cfg(target_os = "linux")]

use chronicle_tests::process::Server;
use std::collections::BTreeMap;

const SECRET: &str = "placement-secret-placement-secret-0123";

/// Parses a `Cpus_allowed_list` value such as `0-3,6`.
fn cpu_list(s: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                cpus.extend(a.parse::<usize>().expect("cpu")..=b.parse::<usize>().expect("cpu"));
            }
            None => cpus.push(part.parse().expect("cpu")),
        }
    }
    cpus
}

fn allowed(status: &str) -> Vec<usize> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc status");
    cpu_list(line)
}

/// Each thread name of the process, with the CPUs each thread of that name may use.
fn threads(pid: u32) -> BTreeMap<String, Vec<Vec<usize>>> {
    let mut by_name: BTreeMap<String, Vec<Vec<usize>>> = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc task dir") {
        let dir = task.expect("task").path();
        let (Ok(name), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // a thread that ended while we looked
        };
        by_name
            .entry(name.trim().to_owned())
            .or_default()
            .push(allowed(&status));
    }
    by_name
}

const STORE_THREADS: [&str; 5] = [
    "sqlite-event-wr",
    "sqlite-event-sy",
    "events-checkpoi",
    "projector",
    "views-checkpoin",
];

/// The request workers' thread name (tokio's default).
const WORKER: &str = "tokio-rt-worker";

/// The threads once every store thread has started (the server listens a little before)
/// and `settled` holds, or as they are after 10 s. A thread is visible by name before its
/// first instruction, which is the one that pins it.
fn threads_once_started(
    pid: u32,
    settled: impl Fn(&BTreeMap<String, Vec<Vec<usize>>>) -> bool,
) -> BTreeMap<String, Vec<Vec<usize>>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let seen = threads(pid);
        let started = STORE_THREADS
            .iter()
            .chain(&[WORKER])
            .all(|name| seen.contains_key(*name));
        if (started && settled(&seen)) || std::time::Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn pinned_store_threads_get_the_last_cpu_and_request_workers_the_others() {
    let ours = allowed(&std::fs::read_to_string("/proc/self/status").expect("status"));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(dir.path(), SECRET, &["--pin-threads", "true"]);
    let (store, workers) = match ours.split_last() {
        Some((&last, rest)) if !rest.is_empty() => (vec![last], rest.to_vec()),
        // One CPU: nothing to split, nothing pinned.
        _ => (ours.clone(), ours.clone()),
    };
    let seen = threads_once_started(server.child.id(), |seen| {
        STORE_THREADS
            .iter()
            .all(|name| seen[*name].iter().all(|cpus| *cpus == store))
    });
    server.stop();

    for name in STORE_THREADS.iter().chain(&[WORKER]) {
        assert!(seen.contains_key(*name), "no {name} thread in {seen:?}");
    }
    for name in STORE_THREADS {
        assert!(
            seen[name].iter().all(|cpus| *cpus == store),
            "{name}: {:?}, expected {store:?} (allowed {ours:?})",
            seen[name]
        );
    }
    assert!(
        seen[WORKER].iter().all(|cpus| *cpus == workers),
        "workers: {:?}, expected {workers:?} (allowed {ours:?})",
        seen[WORKER]
    );
}

#[test]
fn by_default_every_thread_may_run_on_every_cpu() {
    let ours = allowed(&std::fs::read_to_string("/proc/self/status").expect("status"));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), SECRET);
    let seen = threads_once_started(server.child.id(), |_| true);
    server.stop();

    assert!(seen.contains_key("sqlite-event-wr"), "{seen:?}");
    for (name, cpus) in &seen {
        assert!(
            cpus.iter().all(|c| *c == ours),
            "{name}: {cpus:?}, expected {ours:?}"
        );
    }
}

#[test]
fn cpu_lists_parse_ranges_and_singles() {
    assert_eq!(cpu_list("0-1\n"), vec![0, 1]);
    assert_eq!(cpu_list("0,2-4,7"), vec![0, 2, 3, 4, 7]);
    assert_eq!(cpu_list("3"), vec![3]);
}
