//! `DROP EXTENSION quantum_flow` drops the workflows' pgmq queues.
//!
//! A workflow's queue is a pair of pgmq's tables (created by `pgmq.create` at `create_flow`),
//! not a member of this extension, so dropping the extension alone would leave them behind,
//! and a later `CREATE EXTENSION quantum_flow` could not create workflows of the same slugs.
//! The event trigger `quantum_flow_drop_extension` (see sql/finalize.sql) fires at the start
//! of every `DROP EXTENSION`; this function reads the statement's parse tree and, when
//! quantum_flow is among the extensions dropped, drops the queues while the workflows table
//! still says which they are. It all happens in the dropping transaction: should the drop
//! fail, the queues are kept.

use crate::queue;
use pgrx::pg_sys;
use std::ffi::CStr;

/// fmgr's version-1 calling convention marker for `quantum_flow_on_drop_extension` (what
/// `PG_FUNCTION_INFO_V1` declares in C).
#[no_mangle]
pub extern "C" fn pg_finfo_quantum_flow_on_drop_extension() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// The event trigger function `quantum_flow.on_drop_extension()`.
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[pgrx::pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn quantum_flow_on_drop_extension(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let context = unsafe { (*fcinfo).context };
    let is_event_trigger =
        !context.is_null() && unsafe { pgrx::is_a(context, pg_sys::NodeTag::T_EventTriggerData) };
    if !is_event_trigger {
        pgrx::error!("quantum_flow.on_drop_extension() is an event trigger function");
    }
    let data = context.cast::<pg_sys::EventTriggerData>();
    if unsafe { drops_quantum_flow((*data).parsetree) } {
        match queue::drop_workflow_queues() {
            Ok(dropped) => pgrx::notice!(
                "quantum_flow: dropping the pgmq queues of {dropped} workflow(s) with the \
                 extension; the roles quantum_flow_admin, quantum_flow_worker and \
                 quantum_flow_client are kept (roles belong to the cluster: drop them with DROP \
                 ROLE once no database uses them)"
            ),
            Err(e) => pgrx::error!("{e}"),
        }
    }
    pg_sys::Datum::from(0)
}

/// Whether `stmt` is a `DROP EXTENSION` naming quantum_flow.
unsafe fn drops_quantum_flow(stmt: *mut pg_sys::Node) -> bool {
    unsafe {
        if stmt.is_null() || !pgrx::is_a(stmt, pg_sys::NodeTag::T_DropStmt) {
            return false;
        }
        let drop = stmt.cast::<pg_sys::DropStmt>();
        if (*drop).removeType != pg_sys::ObjectType::OBJECT_EXTENSION || (*drop).objects.is_null() {
            return false;
        }
        let objects = (*drop).objects;
        (0..(*objects).length as usize).any(|i| {
            let node = (*(*objects).elements.add(i))
                .ptr_value
                .cast::<pg_sys::Node>();
            pgrx::is_a(node, pg_sys::NodeTag::T_String)
                && CStr::from_ptr((*node.cast::<pg_sys::String>()).sval).to_bytes()
                    == b"quantum_flow"
        })
    }
}
