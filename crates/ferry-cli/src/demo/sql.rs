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
        confirmed_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS order_items (
        order_id TEXT NOT NULL REFERENCES orders (id),
        product_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (order_id, product_id))",
    "CREATE TABLE IF NOT EXISTS inventory_reservations (
        order_id TEXT PRIMARY KEY,
        items TEXT NOT NULL,
        reserved_at TIMESTAMPTZ NOT NULL)",
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
        recorded_at TIMESTAMPTZ NOT NULL)",
];

/// The demo's tables on SQLite.
pub const SQLITE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS orders (
        id TEXT PRIMARY KEY,
        customer_email TEXT NOT NULL,
        total_amount REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed')),
        created_at TEXT NOT NULL,
        confirmed_at TEXT)",
    "CREATE TABLE IF NOT EXISTS order_items (
        order_id TEXT NOT NULL REFERENCES orders (id),
        product_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (order_id, product_id))",
    "CREATE TABLE IF NOT EXISTS inventory_reservations (
        order_id TEXT PRIMARY KEY,
        items TEXT NOT NULL,
        reserved_at TEXT NOT NULL)",
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
        recorded_at TEXT NOT NULL)",
];

/// Empties the demo's tables and its rows in ferry's tables, children first.
pub const RESET: &[&str] = &[
    "DELETE FROM order_items",
    "DELETE FROM orders",
    "DELETE FROM inventory_reservations",
    "DELETE FROM notifications",
    "DELETE FROM dead_letters",
    "DELETE FROM ferry_outbox WHERE routing_key IN ('orders.order.created', 'inventory.stock.reserved')",
    "DELETE FROM ferry_inbox WHERE consumer IN ('inventory.order-created', 'orders.stock-reserved', 'myapp.dlq')",
];

pub const INSERT_ORDER: &str = "INSERT INTO orders (id, customer_email, total_amount, status, created_at) \
     VALUES ($1, $2, $3, 'pending', $4)";
pub const INSERT_ITEM: &str =
    "INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, $3)";
pub const INSERT_RESERVATION: &str =
    "INSERT INTO inventory_reservations (order_id, items, reserved_at) VALUES ($1, $2, $3)";
pub const INSERT_NOTIFICATION: &str = "INSERT INTO notifications (order_id, email, subject, body, sent_at) \
     VALUES ($1, $2, $3, $4, $5)";
pub const CONFIRM_ORDER: &str = "UPDATE orders SET status = 'confirmed', confirmed_at = $2 WHERE id = $1 AND status = 'pending'";
pub const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters \
     (message_id, event_type, order_id, fault_kind, fault_message, original_queue, body, recorded_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub const COUNT_ORDERS: &str = "SELECT COUNT(*) FROM orders";
pub const COUNT_CONFIRMED: &str = "SELECT COUNT(*) FROM orders WHERE status = 'confirmed'";
pub const COUNT_DEAD_LETTERED_ORDERS: &str = "SELECT COUNT(*) FROM orders o WHERE o.status <> 'confirmed' \
     AND EXISTS (SELECT 1 FROM dead_letters d WHERE d.order_id = o.id)";
pub const COUNT_OUTBOX_PENDING: &str = "SELECT COUNT(*) FROM ferry_outbox WHERE status = 'pending'";
pub const COUNT_OUTBOX_PUBLISHED: &str =
    "SELECT COUNT(*) FROM ferry_outbox WHERE status = 'published'";
pub const COUNT_RESERVATIONS: &str = "SELECT COUNT(*) FROM inventory_reservations";
pub const COUNT_DEAD_LETTERS: &str = "SELECT COUNT(*) FROM dead_letters";
pub const COUNT_LOST: &str = "SELECT COUNT(*) FROM orders o WHERE o.status <> 'confirmed' \
     AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.order_id = o.id)";
pub const CONFIRMED_TIMES: &str =
    "SELECT created_at, confirmed_at FROM orders WHERE status = 'confirmed'";
