//! Every SQL statement quantum_flow runs on its own tables, with bound parameters, and the
//! small SPI layer that runs them. Statements that touch pgmq live in `crate::queue`.
//!
//! Each statement is prepared once per backend and kept (`SPI_keepplan`), so the hot path pays
//! for planning once, not per call. Statements run with `read_only = false`, so under READ
//! COMMITTED every statement sees what other transactions committed before it started: the
//! engine relies on that after waiting for a row lock (see `executor`).

pub mod flows;
pub mod runs;

use crate::error::{QfError, QfResult};
use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiHeapTupleData};
use pgrx::{FromDatum, IntoDatum, PgOid, Spi};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Kept plans, keyed by the address of their `'static` SQL text. Leaked on purpose: a
    /// backend keeps a fixed, small set of statements for its lifetime.
    static PLANS: RefCell<HashMap<usize, &'static OwnedPreparedStatement>> =
        RefCell::new(HashMap::new());
    /// Kept plans of statements whose text is built at run time (one per queue), keyed by
    /// their text. PostgreSQL's plan cache re-plans them when a table they name changes, so a
    /// queue dropped and created again is found by its name.
    static DYNAMIC_PLANS: RefCell<HashMap<String, &'static OwnedPreparedStatement>> =
        RefCell::new(HashMap::new());
}

/// Like `query`, for a statement whose text is built at run time from validated, quoted
/// names (a queue's table): prepared once per backend and text, so it can be on the hot path.
pub fn query_prepared<R>(
    sql: &str,
    args: &[DatumWithOid<'_>],
    mut on_row: impl FnMut(&SpiHeapTupleData<'_>) -> QfResult<R>,
) -> QfResult<Vec<R>> {
    Spi::connect(|client| {
        let cached = DYNAMIC_PLANS.with(|p| p.borrow().get(sql).copied());
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
                let plan: &'static OwnedPreparedStatement =
                    Box::leak(Box::new(client.prepare_mut(sql, &types)?.keep()));
                DYNAMIC_PLANS.with(|p| p.borrow_mut().insert(sql.to_string(), plan));
                plan
            }
        };
        let table = client.select(plan, None, args)?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            out.push(on_row(&row)?);
        }
        Ok(out)
    })
}

/// Runs the statement `sql` with `args` and maps each result row with `on_row`.
pub fn query<R>(
    sql: &'static str,
    args: &[DatumWithOid<'_>],
    mut on_row: impl FnMut(&SpiHeapTupleData<'_>) -> QfResult<R>,
) -> QfResult<Vec<R>> {
    Spi::connect(|client| {
        let key = sql.as_ptr() as usize;
        let cached = PLANS.with(|p| p.borrow().get(&key).copied());
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
                let plan: &'static OwnedPreparedStatement =
                    Box::leak(Box::new(client.prepare_mut(sql, &types)?.keep()));
                PLANS.with(|p| p.borrow_mut().insert(key, plan));
                plan
            }
        };
        let table = client.select(plan, None, args)?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            out.push(on_row(&row)?);
        }
        Ok(out)
    })
}

/// Runs a statement whose text is built at run time (only ever from validated slugs, quoted
/// with `quote_ident`); it is planned on each call, so keep it off the hot path.
pub fn query_dynamic<R>(
    sql: &str,
    args: &[DatumWithOid<'_>],
    mut on_row: impl FnMut(&SpiHeapTupleData<'_>) -> QfResult<R>,
) -> QfResult<Vec<R>> {
    Spi::connect_mut(|client| {
        let table = client.update(sql, None, args)?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            out.push(on_row(&row)?);
        }
        Ok(out)
    })
}

/// Runs a statement for its effect; returns the number of rows it returned.
pub fn execute(sql: &'static str, args: &[DatumWithOid<'_>]) -> QfResult<usize> {
    Ok(query(sql, args, |_| Ok(()))?.len())
}

/// The first row of a statement, if any.
pub fn query_opt<R>(
    sql: &'static str,
    args: &[DatumWithOid<'_>],
    on_row: impl FnMut(&SpiHeapTupleData<'_>) -> QfResult<R>,
) -> QfResult<Option<R>> {
    Ok(query(sql, args, on_row)?.into_iter().next())
}

/// Column `ordinal` (1-based), which may be NULL.
pub fn col<T: FromDatum + IntoDatum>(
    row: &SpiHeapTupleData<'_>,
    ordinal: usize,
) -> QfResult<Option<T>> {
    Ok(row.get::<T>(ordinal)?)
}

/// Column `ordinal` (1-based), which the statement guarantees is not NULL.
pub fn req<T: FromDatum + IntoDatum>(row: &SpiHeapTupleData<'_>, ordinal: usize) -> QfResult<T> {
    row.get::<T>(ordinal)?
        .ok_or_else(|| QfError::Internal(format!("column {ordinal} is unexpectedly NULL")))
}
