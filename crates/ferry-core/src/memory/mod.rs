//! The in-memory transport and stores, for development and tests: no broker, no database.
