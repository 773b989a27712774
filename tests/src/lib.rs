//! Shared pieces of the black-box tests: the event-store conformance suite that every
//! backend runs, and helpers to start Chronicle.

pub mod conformance;
