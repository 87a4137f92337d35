//! The demo's SQL, one implementation for PostgreSQL and SQLite: the statements are the same
//! (`$n` parameters work on both); only the table definitions differ.

/// The demo's tables on PostgreSQL.
pub const PG_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS orders (
        id TEXT PRIMARY KEY,
        customer_email TEXT NOT NULL,
        total_amount DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
        created_at TIMESTAMPTZ NOT NULL,
        committed_at TIMESTAMPTZ,
        confirmed_at TIMESTAMPTZ,
        confirm_attempt INTEGER)",
    "CREATE TABLE IF NOT EXISTS order_items (
        order_id TEXT NOT NULL REFERENCES orders (id),
        product_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (order_id, product_id))",
    "CREATE TABLE IF NOT EXISTS inventory_reservations (
        order_id TEXT PRIMARY KEY,
        items TEXT NOT NULL,
        reserved_at TIMESTAMPTZ NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1)",
    "CREATE TABLE IF NOT EXISTS notifications (
        order_id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        sent_at TIMESTAMPTZ NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead_letters (
        id BIGSERIAL PRIMARY KEY,
        message_id TEXT,
        event_type TEXT,
        order_id TEXT,
        fault_kind TEXT NOT NULL,
        fault_message TEXT NOT NULL,
        original_queue TEXT,
        body BYTEA NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1)",
    "CREATE TABLE IF NOT EXISTS skipped_duplicates (
        id BIGSERIAL PRIMARY KEY,
        consumer TEXT NOT NULL,
        message_id TEXT NOT NULL,
        skipped_at TIMESTAMPTZ NOT NULL)",
];

/// The demo's tables on SQLite.
pub const SQLITE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS orders (
        id TEXT PRIMARY KEY,
        customer_email TEXT NOT NULL,
        total_amount REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
        created_at TEXT NOT NULL,
        committed_at TEXT,
        confirmed_at TEXT,
        confirm_attempt INTEGER)",
    "CREATE TABLE IF NOT EXISTS order_items (
        order_id TEXT NOT NULL REFERENCES orders (id),
        product_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (order_id, product_id))",
    "CREATE TABLE IF NOT EXISTS inventory_reservations (
        order_id TEXT PRIMARY KEY,
        items TEXT NOT NULL,
        reserved_at TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1)",
    "CREATE TABLE IF NOT EXISTS notifications (
        order_id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        sent_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT,
        event_type TEXT,
        order_id TEXT,
        fault_kind TEXT NOT NULL,
        fault_message TEXT NOT NULL,
        original_queue TEXT,
        body BLOB NOT NULL,
        recorded_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1)",
    "CREATE TABLE IF NOT EXISTS skipped_duplicates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        consumer TEXT NOT NULL,
        message_id TEXT NOT NULL,
        skipped_at TEXT NOT NULL)",
];

/// Columns added to the demo's tables since they were first created, on PostgreSQL: a
/// database left by an older demo gets them when it is opened. (table, column, definition)
pub const PG_ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("orders", "committed_at", "TIMESTAMPTZ"),
    ("orders", "confirm_attempt", "INTEGER"),
    (
        "inventory_reservations",
        "attempt",
        "INTEGER NOT NULL DEFAULT 1",
    ),
    ("dead_letters", "attempts", "INTEGER NOT NULL DEFAULT 1"),
];

/// [`PG_ADDED_COLUMNS`] on SQLite.
pub const SQLITE_ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("orders", "committed_at", "TEXT"),
    ("orders", "confirm_attempt", "INTEGER"),
    (
        "inventory_reservations",
        "attempt",
        "INTEGER NOT NULL DEFAULT 1",
    ),
    ("dead_letters", "attempts", "INTEGER NOT NULL DEFAULT 1"),
];

/// Whether a column exists (table, column), on PostgreSQL.
pub const PG_HAS_COLUMN: &str = "SELECT COUNT(*) FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2";
/// Whether a column exists (table, column), on SQLite.
pub const SQLITE_HAS_COLUMN: &str = "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2";

/// The demo's rows in `ferry_outbox`: its two events. Other applications may share the table.
macro_rules! demo_outbox_rows {
    () => {
        "event_type IN ('orders.order.created', 'inventory.stock.reserved') \
         AND routing_key IN ('orders.order.created', 'inventory.stock.reserved')"
    };
}

/// Empties the demo's tables and its rows in ferry's tables, children first.
pub const RESET: &[&str] = &[
    "DELETE FROM order_items",
    "DELETE FROM orders",
    "DELETE FROM inventory_reservations",
    "DELETE FROM notifications",
    "DELETE FROM dead_letters",
    "DELETE FROM skipped_duplicates",
    concat!("DELETE FROM ferry_outbox WHERE ", demo_outbox_rows!()),
    "DELETE FROM ferry_inbox WHERE consumer IN ('inventory.order-created', 'orders.stock-reserved', 'myapp.dlq')",
    // The dead-letter store keeps what failed on the demo's queues in earlier runs: a run starts
    // without them, as it starts without its own `dead_letters` rows.
    "DELETE FROM ferry_dead_letters WHERE queue IN ('inventory.order-created', 'orders.stock-reserved')",
];

pub const INSERT_ORDER: &str = "INSERT INTO orders (id, customer_email, total_amount, status, created_at) \
     VALUES ($1, $2, $3, 'pending', $4)";
pub const INSERT_ITEM: &str =
    "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, $3)";
pub const INSERT_RESERVATION: &str = "INSERT INTO inventory_reservations (order_id, items, reserved_at, attempt) VALUES ($1, $2, $3, $4)";
/// When the order's transaction committed: the start of its latency.
pub const ORDER_COMMITTED: &str = "UPDATE orders SET committed_at = $2 WHERE id = $1";
/// A delivery the inbox recognised as already processed.
pub const INSERT_SKIPPED_DUPLICATE: &str =
    "INSERT INTO skipped_duplicates (consumer, message_id, skipped_at) VALUES ($1, $2, $3)";
pub const INSERT_NOTIFICATION: &str = "INSERT INTO notifications (order_id, email, subject, body, sent_at) \
     VALUES ($1, $2, $3, $4, $5)";
pub const CONFIRM_ORDER: &str = "UPDATE orders SET status = 'confirmed', confirmed_at = $2, confirm_attempt = $3 \
     WHERE id = $1 AND status = 'pending'";
pub const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters \
     (message_id, event_type, order_id, fault_kind, fault_message, original_queue, body, recorded_at, attempts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub const COUNT_ORDERS: &str = "SELECT COUNT(*) FROM orders";
pub const COUNT_CONFIRMED: &str = "SELECT COUNT(*) FROM orders WHERE status = 'confirmed'";
pub const COUNT_DEAD_LETTERED_ORDERS: &str = "SELECT COUNT(*) FROM orders o WHERE o.status <> 'confirmed' \
     AND EXISTS (SELECT 1 FROM dead_letters d WHERE d.order_id = o.id)";
pub const COUNT_OUTBOX_PENDING: &str = concat!(
    "SELECT COUNT(*) FROM ferry_outbox WHERE status = 'pending' AND ",
    demo_outbox_rows!()
);
pub const COUNT_OUTBOX_PUBLISHED: &str = concat!(
    "SELECT COUNT(*) FROM ferry_outbox WHERE status = 'published' AND ",
    demo_outbox_rows!()
);
/// Retries: every reservation, confirmation and dead letter records the delivery attempt that
/// made it, and each attempt after the first was a retry.
pub const COUNT_RETRIES: &str = "SELECT \
     (SELECT COALESCE(SUM(attempt - 1), 0) FROM inventory_reservations) \
     + (SELECT COALESCE(SUM(confirm_attempt - 1), 0) FROM orders WHERE confirm_attempt IS NOT NULL) \
     + (SELECT COALESCE(SUM(attempts - 1), 0) FROM dead_letters)";
pub const COUNT_SKIPPED_DUPLICATES: &str = "SELECT COUNT(*) FROM skipped_duplicates";
pub const COUNT_RESERVATIONS: &str = "SELECT COUNT(*) FROM inventory_reservations";
pub const COUNT_DEAD_LETTERS: &str = "SELECT COUNT(*) FROM dead_letters";
pub const COUNT_LOST: &str = "SELECT COUNT(*) FROM orders o WHERE o.status <> 'confirmed' \
     AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.order_id = o.id)";
/// Committed and confirmed times of the confirmed orders (an order whose commit time was not
/// recorded, its process stopped right after the commit, counts from its creation).
pub const CONFIRMED_TIMES: &str = "SELECT COALESCE(committed_at, created_at), confirmed_at FROM orders WHERE status = 'confirmed'";
