//! quantum_flow: a durable DAG workflow engine inside PostgreSQL, on pgmq.
//!
//! `api` is the SQL surface; `definitions` and `executor` do the work transactionally;
//! `engine` holds the pure rules; `store` and `queue` hold every SQL statement; `wakeup` lets
//! idle pollers sleep until work arrives.

mod api;
mod definitions;
mod engine;
mod error;
mod executor;
mod jsonb;
mod queue;
mod store;
mod wakeup;

pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    wakeup::init();
}
