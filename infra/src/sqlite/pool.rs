//! A fixed set of read-only connections, used from blocking threads. At most `SIZE` reads
//! run at once; each keeps its connection (and its prepared statements) for the next.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub(crate) struct ReadPool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

const SIZE: usize = 8;

impl ReadPool {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: Arc::new(path.to_owned()),
            idle: Arc::new(Mutex::new(Vec::with_capacity(SIZE))),
            permits: Arc::new(Semaphore::new(SIZE)),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            self.path.as_ref(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `f` on a pooled connection on tokio's blocking pool.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "read pool closed".to_owned())?;
        let pool = self.clone();
        blocking(move || {
            let _permit = permit;
            let pooled = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => pool.open().map_err(|e| e.to_string())?,
            };
            let result = f(&conn).map_err(|e| e.to_string());
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| format!("read task failed: {e}"))?
    }
}

/// Runs blocking SQLite work: inline on a current-thread runtime, which here is a
/// projector's own thread with nothing else to run (a hop to the blocking pool and back
/// would only add two thread wake-ups to the projection lag); on tokio's blocking pool
/// everywhere else.
pub(crate) async fn blocking<R, F>(f: F) -> Result<R, tokio::task::JoinError>
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let inline = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
    if inline {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f).await
}
