//! Where the embedded backend's threads run, when asked (`serve --pin-threads true`).
//!
//! The embedded store funnels every append through a few threads of its own: the event
//! writer, the fsync thread, the projector and the two WAL checkpointers. They hand work to one
//! another and to the request workers many thousand times a second. Keeping the store's
//! threads on one core and the request workers on the others was once the faster layout on
//! two cores (16.0-18.2k `POST /tasks` per second against 13.8-15.5k unpinned), while the
//! idle embedded workers still committed a checkpoint on every fsync. Since they stopped,
//! the scheduler does better: two request workers unpinned served 12.4k under wrk against
//! 9.7-10.1k pinned with one, at less CPU per request, so pinning is off by default and
//! kept for machines where it measures faster.
//!
//! Lowering the projector's priority (nice 10 or 19 below the request workers, so that the
//! acknowledging threads get a CPU first) was measured and not kept: the WAL syncs got
//! shorter (440 -> 370 us at 64 connections), but requests/s moved within the machine's
//! noise, and two runs in four had a p99 of 18-56 ms. A projector preempted while it holds
//! the in-memory tail's lock holds back the thread that acknowledges appends; lowering the
//! checkpointers too was worse still, since they take the writers' locks.
//!
//! [`Placement::split`] plans it from the CPUs the process may use (its affinity mask, so a
//! container's cpuset is respected); the caller pins itself to the workers' CPUs before it
//! starts the request runtime, whose threads inherit that, and every store thread is started
//! with [`spawn_store_thread`]. Without a plan (fewer than two CPUs, pinning turned off,
//! or not Linux) nothing is pinned.

use std::sync::OnceLock;

/// The store threads' CPU, once a plan is installed.
static STORE_CPU: OnceLock<usize> = OnceLock::new();

/// Which CPUs serve requests and which one runs the store's threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The CPU of the writer, fsync, projector and checkpointer threads.
    pub store: usize,
    /// The CPUs of the request workers (and everything else the process starts).
    pub workers: Vec<usize>,
}

impl Placement {
    /// The last CPU the process may use for the store, the others for requests; `None`
    /// with fewer than two CPUs, or where affinity cannot be read.
    pub fn split() -> Option<Self> {
        Self::from_allowed(allowed_cpus()?)
    }

    fn from_allowed(mut cpus: Vec<usize>) -> Option<Self> {
        if cpus.len() < 2 {
            return None;
        }
        let store = cpus.pop()?;
        Some(Self {
            store,
            workers: cpus,
        })
    }

    /// Pins the calling thread to the workers' CPUs (threads it starts later inherit them)
    /// and makes [`spawn_store_thread`] pin store threads to the store's CPU from now on.
    /// Meant once per process, before the runtime starts; a later plan keeps the first CPU.
    pub fn install(&self) -> std::io::Result<()> {
        pin_current(&self.workers)?;
        let _ = STORE_CPU.set(self.store);
        Ok(())
    }
}

/// Starts one of the store's threads, named `name`: on the store's CPU when a plan is
/// installed, where the scheduler puts it otherwise. A failure to pin only costs speed, so
/// it is logged and the thread runs unpinned.
pub fn spawn_store_thread<F>(name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Some(&cpu) = STORE_CPU.get()
                && let Err(e) = pin_current(&[cpu])
            {
                tracing::warn!(cpu, error = %e, "could not pin a store thread; it runs unpinned");
            }
            f();
        })
}

#[cfg(target_os = "linux")]
fn allowed_cpus() -> Option<Vec<usize>> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    let set = sched_getaffinity(Pid::from_raw(0)).ok()?;
    Some(
        (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
    )
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Option<Vec<usize>> {
    None
}

#[cfg(target_os = "linux")]
fn pin_current(cpus: &[usize]) -> std::io::Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).map_err(std::io::Error::from)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn pin_current(_: &[usize]) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_allowed_cpu_goes_to_the_store() {
        assert_eq!(Placement::from_allowed(vec![0]), None);
        assert_eq!(Placement::from_allowed(vec![]), None);
        assert_eq!(
            Placement::from_allowed(vec![2, 3, 5]),
            Some(Placement {
                store: 5,
                workers: vec![2, 3],
            })
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_thread_runs_only_where_it_was_put() {
        let cpus = allowed_cpus().expect("affinity is readable on linux");
        let last = *cpus.last().expect("at least one cpu");
        std::thread::spawn(move || {
            pin_current(&[last]).expect("pinning to an allowed cpu");
            assert_eq!(allowed_cpus(), Some(vec![last]));
        })
        .join()
        .expect("the pinned thread");
    }
}
