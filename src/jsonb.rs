//! `Jsonb`: a `jsonb` value kept as PostgreSQL's own datum.
//!
//! pgrx's `JsonB` converts to and from `serde_json::Value` through text. Step inputs and outputs
//! can be large (a map step's fan-in of 10,000 outputs), and quantum_flow never needs to look
//! inside them from Rust: it hands them from one SQL statement to the next. This type passes the
//! datum through untouched, copying it only when it must outlive an SPI call.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::memcxt::PgMemoryContexts;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::{FromDatum, IntoDatum};

/// A non-NULL `jsonb` datum (NULL is `Option<Jsonb>::None`).
#[derive(Clone, Copy, Debug)]
pub struct Jsonb(pg_sys::Datum);

impl Jsonb {
    /// The value's uncompressed size in bytes (without the 4-byte varlena header), read from
    /// its header: a compressed or out-of-line value is not decompressed or fetched.
    pub fn raw_size(self) -> i64 {
        let with_header = unsafe { pg_sys::toast_raw_datum_size(self.0) };
        with_header as i64 - pg_sys::VARHDRSZ as i64
    }

    /// The value as a `serde_json::Value`, read from its text form. Err with serde's reason
    /// for a value `jsonb` holds and serde_json cannot (a number beyond `f64`'s range, such as
    /// `1e400`; nesting deeper than 128 levels), where pgrx's `JsonB` would panic.
    pub fn to_value(self) -> Result<serde_json::Value, String> {
        unsafe {
            let varlena = self.0.cast_mut_ptr();
            let detoasted = pg_sys::pg_detoast_datum_packed(varlena);
            let text = pgrx::direct_function_call::<&core::ffi::CStr>(
                pg_sys::jsonb_out,
                &[Some(pg_sys::Datum::from(detoasted))],
            );
            let value = match text {
                Some(cstr) => {
                    let value = cstr.to_str().map_err(|e| e.to_string()).and_then(|t| {
                        // serde's position is in jsonb's rendering, not in what the caller
                        // wrote (1e400 is rendered with its 400 zeros): left out
                        serde_json::from_str(t).map_err(|e| {
                            let why = e.to_string();
                            why.split(" at line ")
                                .next()
                                .unwrap_or_default()
                                .to_string()
                        })
                    });
                    pg_sys::pfree(cstr.as_ptr().cast_mut().cast());
                    value
                }
                None => Err("jsonb_out returned NULL".to_string()),
            };
            if detoasted != varlena {
                pg_sys::pfree(detoasted.cast());
            }
            value
        }
    }
}

impl FromDatum for Jsonb {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            None
        } else {
            Some(Jsonb(datum))
        }
    }

    unsafe fn from_datum_in_memory_context(
        mut memory_context: PgMemoryContexts,
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SPI results die with the SPI connection: copy (and detoast) into the caller's context.
        memory_context.switch_to(|_| unsafe {
            let copy = pg_sys::pg_detoast_datum_copy(datum.cast_mut_ptr());
            Some(Jsonb(pg_sys::Datum::from(copy)))
        })
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

unsafe impl SqlTranslatable for Jsonb {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(Jsonb);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

unsafe impl<'fcx> ArgAbi<'fcx> for Jsonb {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

unsafe impl BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

/// An element of a `jsonb[]` argument (`complete_tasks`' outputs): the datum points into the
/// array, which lives for the whole call.
unsafe impl pgrx::datum::UnboxDatum for Jsonb {
    type As<'src> = Jsonb;
    unsafe fn unbox<'src>(datum: Datum<'src>) -> Self::As<'src>
    where
        Self: 'src,
    {
        Jsonb(datum.sans_lifetime())
    }
}
