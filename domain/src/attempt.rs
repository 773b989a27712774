//! The attempts of a job done against an outside service (an AI query, an email), as its
//! aggregate counts them: a worker claims attempt n+1 after n, and ends only the attempt
//! open now, so two workers never run or end the same attempt.

/// A step named an attempt that is neither the next (to claim) nor the open one (to end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongAttempt {
    pub attempt: u32,
    /// Attempts claimed so far.
    pub had: u32,
}

/// `attempt` may be claimed: it is the one after the `claimed` so far.
pub fn check_next(claimed: u32, attempt: u32) -> Result<(), WrongAttempt> {
    if attempt == claimed + 1 {
        Ok(())
    } else {
        Err(WrongAttempt {
            attempt,
            had: claimed,
        })
    }
}

/// `attempt` may be ended: it is the last claimed, and still `open`.
pub fn check_current(claimed: u32, open: bool, attempt: u32) -> Result<(), WrongAttempt> {
    if attempt == claimed && open {
        Ok(())
    } else {
        Err(WrongAttempt {
            attempt,
            had: claimed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_next_attempt_is_claimed_and_only_the_open_one_ended() {
        assert!(check_next(0, 1).is_ok());
        assert_eq!(check_next(1, 1), Err(WrongAttempt { attempt: 1, had: 1 }));
        assert!(check_current(2, true, 2).is_ok());
        assert!(check_current(2, false, 2).is_err(), "ended already");
        assert!(check_current(2, true, 1).is_err(), "an earlier one");
    }
}
