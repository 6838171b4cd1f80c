//! quantum_flow: a durable DAG workflow engine inside PostgreSQL, on pgmq.
//!
//! `api` is the SQL surface; `definitions`, `executor` and `maintenance` do the work
//! transactionally; `engine` holds the pure rules; `store` and `queue` hold every SQL
//! statement; `wakeup` lets idle pollers sleep until work arrives; `bgworker` runs
//! `maintain()` when the library is preloaded; `ddl` cleans up on `DROP EXTENSION`;
//! `settings` registers the `quantum_flow.*` settings.

mod api;
mod bgworker;
mod claim_commit;
mod concurrency;
mod ddl;
mod definitions;
mod engine;
mod error;
mod events;
mod executor;
mod jsonb;
mod maintenance;
mod queue;
mod settings;
mod store;
mod wakeup;

pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx appends a Rust backtrace to every error's DETAIL when the server's environment
    // asks for backtraces (RUST_BACKTRACE); users would see it in psql and in drivers.
    // RUST_LIB_BACKTRACE takes precedence over RUST_BACKTRACE for captured backtraces, and
    // the server process is single-threaded here.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    settings::init();
    claim_commit::init();
    wakeup::init();
    bgworker::init();
}
