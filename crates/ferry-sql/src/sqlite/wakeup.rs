//! Waking relays without `LISTEN/NOTIFY`: one in-process signal shared by every outbox on one
//! database file, raised by each add (before its commit), each commit of an
//! [`crate::OutboxTransaction`], and [`super::SqliteOutbox::notify`].

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock, Weak},
};

use sqlx::SqlitePool;

use crate::wakeup::Wakeup;

/// The signal of the database `pool` opens (one per file in this process).
pub(super) fn for_pool(pool: &SqlitePool) -> Arc<Wakeup> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Wakeup>>>> = OnceLock::new();
    let options = pool.connect_options();
    let path = options.get_filename();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(mut registry) = REGISTRY.get_or_init(Mutex::default).lock() else {
        return Arc::new(Wakeup::default());
    };
    registry.retain(|_, w| w.strong_count() > 0);
    if let Some(existing) = registry.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    let wakeup = Arc::new(Wakeup::default());
    registry.insert(key, Arc::downgrade(&wakeup));
    wakeup
}
