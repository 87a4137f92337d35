//! The postgres outbox and inbox of ferry. (Being written.)
