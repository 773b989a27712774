//! A few read-only connections, used from blocking threads.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub(crate) struct ReadPool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

const MAX_IDLE: usize = 16;

impl ReadPool {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: Arc::new(path.to_owned()),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            self.path.as_ref(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Runs `f` on a pooled connection on tokio's blocking pool.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R, String>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(conn)) => conn,
                _ => pool.open().map_err(|e| e.to_string())?,
            };
            let result = f(&conn).map_err(|e| e.to_string());
            if let Ok(mut idle) = pool.idle.lock()
                && idle.len() < MAX_IDLE
            {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| format!("read task failed: {e}"))?
    }
}
