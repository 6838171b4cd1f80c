//! This crate exists only so that cargo fetches the `pgmq` crate (pinned in Cargo.toml) as part
//! of this workspace. That crate embeds pgmq's SQL-only PostgreSQL extension:
//! `src/install/embedded/pgmq.control` and `src/install/embedded/sql/pgmq.sql`.
//! `scripts/setup.sh` finds the crate's directory with `cargo metadata` and installs those two
//! files into `$(pg_config --sharedir)/extension/` (the script renamed
//! `pgmq--<default_version>.sql`), which is how quantum_flow's `requires = 'pgmq'` is met.
//!
//! It is never built by the project's scripts and has no code.
