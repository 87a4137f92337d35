//! Temporary databases against the real PostgreSQL server.

use ferry_testkit::pg::{TempDatabase, admin_url};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

async fn database_exists(name: &str) -> bool {
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    admin.close().await.unwrap();
    exists
}

#[tokio::test]
async fn create_gives_an_empty_usable_database_and_drop_db_removes_it() {
    let db = TempDatabase::create().await.unwrap();
    assert!(db.name().starts_with("ferry_test_"));
    assert!(db.url().ends_with(&format!("/{}", db.name())));
    assert!(database_exists(db.name()).await);

    let pool = db.pool().await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, db.name());
    sqlx::query("CREATE TABLE t (id int)")
        .execute(&pool)
        .await
        .unwrap();

    // The pool is still open: drop_db must end its sessions.
    let name = db.name().to_owned();
    db.drop_db().await.unwrap();
    assert!(!database_exists(&name).await);
    pool.close().await;
}

#[tokio::test]
async fn two_databases_are_distinct() {
    let a = TempDatabase::create().await.unwrap();
    let b = TempDatabase::create().await.unwrap();
    assert_ne!(a.name(), b.name());
    a.drop_db().await.unwrap();
    b.drop_db().await.unwrap();
}

#[tokio::test]
async fn dropping_without_drop_db_still_removes_the_database() {
    let db = TempDatabase::create().await.unwrap();
    let name = db.name().to_owned();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    drop(db);
    assert!(!database_exists(&name).await);
    // The open session was ended by the drop.
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err());
}
