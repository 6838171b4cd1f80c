//! The C symbols of 0.1.0's functions whose arguments changed in 0.2.0.
//!
//! A function whose SQL arguments change gets a new symbol (`start_flow_v2_wrapper` for
//! `start_flow`, and so on): between installing the new library and `ALTER EXTENSION
//! quantum_flow UPDATE`, a database still has the old SQL definitions, which call the old
//! symbols with the old arguments. A new wrapper would read arguments that were not passed;
//! these stubs take none and raise `extension_version_mismatch` instead, like every other
//! function before the update.

use crate::error::QfError;
use pgrx::pg_sys;

macro_rules! retired {
    ($($finfo:ident, $symbol:ident;)*) => {$(
        /// fmgr's version-1 calling convention marker (what `PG_FUNCTION_INFO_V1` declares).
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        /// A 0.1.0 definition calling into this library: refuse, naming the fix.
        ///
        /// # Safety
        /// Called by PostgreSQL's function manager; the arguments are not read.
        #[pgrx::pg_guard]
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $symbol(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            refuse()
        }
    )*};
}

retired! {
    pg_finfo_create_flow_wrapper, create_flow_wrapper;
    pg_finfo_add_step_wrapper, add_step_wrapper;
    pg_finfo_start_flow_wrapper, start_flow_wrapper;
    pg_finfo_fail_task_wrapper, fail_task_wrapper;
    pg_finfo_get_run_wrapper, get_run_wrapper;
}

fn refuse() -> ! {
    let error = match super::check_version() {
        Err(e) => e,
        // the SQL definitions are this version's, so they do not call these symbols
        Ok(()) => QfError::Internal("a 0.1.0 function definition called a retired symbol".into()),
    };
    pgrx::pg_sys::panic::ErrorReport::from(error).report(pgrx::PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}
