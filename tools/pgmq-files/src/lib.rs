//! Never built: this crate exists so that `cargo metadata` fetches the `pgmq` crate, whose
//! embedded extension files (`src/install/embedded/pgmq.control`, `sql/pgmq.sql`)
//! `scripts/setup.sh` installs into PostgreSQL.
