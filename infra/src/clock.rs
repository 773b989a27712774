//! The wall clock, truncated to what the stores keep (microseconds).

use chrono::{DateTime, Utc};

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl commands::Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        domain::envelope::truncate_micros(Utc::now())
    }
}
