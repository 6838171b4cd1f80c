//! Shared by the integration tests: one fresh database per test file, on the cluster named by
//! QF_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres).
#![allow(dead_code)]

use quantum_flow_client::{connect, Error, ErrorCode};
use tokio::sync::OnceCell;
use tokio_postgres::Client;

static DATABASE: OnceCell<String> = OnceCell::const_new();

fn base_url() -> String {
    std::env::var("QF_TEST_DATABASE_URL").expect(
        "set QF_TEST_DATABASE_URL to a cluster with quantum_flow installed, \
         e.g. postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// `url` with its database replaced by `dbname` (URL or key=value form).
fn with_database(url: &str, dbname: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (main, query) = match url.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (url, None),
        };
        let scheme_end = main.find("://").unwrap() + 3;
        let host_part = match main[scheme_end..].find('/') {
            Some(i) => &main[..scheme_end + i],
            None => main,
        };
        match query {
            Some(q) => format!("{host_part}/{dbname}?{q}"),
            None => format!("{host_part}/{dbname}"),
        }
    } else {
        format!("{url} dbname={dbname}")
    }
}

/// The connection string of this test file's database: dropped, created and given the
/// extension once, by whichever test gets here first.
pub async fn database(name: &str) -> String {
    DATABASE
        .get_or_init(|| async {
            let admin = connect(&base_url(), "quantum_flow_client tests")
                .await
                .expect("connect to QF_TEST_DATABASE_URL");
            // two statements: DROP/CREATE DATABASE refuse to run in one multi-statement call
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop the old test database");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the test database");
            let url = with_database(&base_url(), name);
            let client = connect(&url, "quantum_flow_client tests").await.unwrap();
            client
                .batch_execute("CREATE EXTENSION quantum_flow CASCADE")
                .await
                .expect("CREATE EXTENSION quantum_flow CASCADE");
            url
        })
        .await
        .clone()
}

pub async fn client(url: &str) -> Client {
    connect(url, "quantum_flow_client tests").await.unwrap()
}

/// Asserts an API error with this code, SQLSTATE, and a message `"<code>: ..."` containing
/// `mentions`.
#[track_caller]
pub fn assert_api_error<T: std::fmt::Debug>(
    result: Result<T, Error>,
    code: ErrorCode,
    sqlstate: &str,
    mentions: &str,
) {
    match result {
        Err(Error::Api {
            code: c,
            sqlstate: s,
            message,
            ..
        }) => {
            assert_eq!(c, code, "{message}");
            assert_eq!(s, sqlstate, "{message}");
            assert_eq!(code.expected_sqlstate(), Some(sqlstate));
            assert!(
                message.starts_with(&format!("{}: ", code.as_str())),
                "{message}"
            );
            assert!(
                message.contains(mentions),
                "{message:?} should mention {mentions:?}"
            );
        }
        other => panic!("expected {code} ({sqlstate}), got {other:?}"),
    }
}
