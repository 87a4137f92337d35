//! The sqlite outbox and inbox of ferry. (Being written.)
