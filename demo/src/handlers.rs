//! The step implementations the worker processes run, one set per workflow.

use crate::csv;
use quantum_flow_client::tokio_postgres::Client;
use quantum_flow_client::uuid::Uuid;
use quantum_flow_client::StepFunctions;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

pub const PIPELINE: &str = "ai_data_pipeline";
pub const ETL: &str = "claude_etl";

/// The handlers of workflow `slug` (None if the demo has none). `db` is the worker
/// process's own connection, for steps that touch application tables.
pub fn for_workflow(slug: &str, db: Arc<Client>) -> Option<StepFunctions> {
    match slug {
        PIPELINE => Some(pipeline()),
        ETL => Some(etl(db)),
        "support_ticket_triage" => Some(triage(db)),
        _ => None,
    }
}

fn field<'a>(input: &'a Value, path: &[&str]) -> Result<&'a Value, String> {
    let mut v = input;
    for key in path {
        v = v
            .get(key)
            .ok_or_else(|| format!("input has no {:?}", path.join(".")))?;
    }
    Ok(v)
}

/// The run's `batch` id (the main process puts one in the flow input).
fn batch_id(input: &Value) -> Result<Uuid, String> {
    field(input, &["run", "batch"])?
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "run.batch is not a uuid".to_string())
}

/// Stands in for real work (an API or model call) so that progress is visible.
async fn work(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// ---------------------------------------------------------------------------------------
// The README's Quick Start
// ---------------------------------------------------------------------------------------

fn pipeline() -> StepFunctions {
    StepFunctions::new()
        .step("fetch_data", |_input| async {
            Ok(json!((1..=100).collect::<Vec<i64>>()))
        })
        .step("process_batch", |input| async move {
            let item = field(&input, &["item"])?
                .as_i64()
                .ok_or("item is not an integer")?;
            work(150 + (item as u64 % 4) * 50).await;
            Ok(json!({"processed": item * 2}))
        })
        .step("save_results", |input| async move {
            let outputs = field(&input, &["process_batch"])?
                .as_array()
                .ok_or("process_batch output is not an array")?;
            let values: Vec<i64> = outputs
                .iter()
                .map(|o| o["processed"].as_i64().ok_or("an output has no processed"))
                .collect::<Result<_, _>>()?;
            let in_order = values.iter().zip(1..).all(|(v, i)| *v == 2 * i);
            Ok(json!({"saved": values.len(), "sum": values.iter().sum::<i64>(), "in_order": in_order}))
        })
}

// ---------------------------------------------------------------------------------------
// The README's Claude-generated ETL
// ---------------------------------------------------------------------------------------

fn etl(db: Arc<Client>) -> StepFunctions {
    StepFunctions::new()
        .step("extract_csv", |input| async move {
            let path = field(&input, &["run", "csv_path"])?
                .as_str()
                .ok_or("csv_path is not a string")?
                .to_string();
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            let rows = csv::parse(&text).map_err(|e| format!("{path}: {e}"))?;
            Ok(Value::Array(
                rows.into_iter()
                    .map(|(line, fields)| {
                        let mut row: Map<String, Value> =
                            fields.into_iter().map(|(k, v)| (k, json!(v))).collect();
                        row.insert("line".into(), json!(line));
                        Value::Object(row)
                    })
                    .collect(),
            ))
        })
        .step("validate_rows", |input| async move {
            let row = field(&input, &["item"])?;
            work(100).await;
            Ok(match validate_customer(row) {
                Ok(clean) => json!({"valid": true, "row": clean}),
                Err(reason) => json!({"valid": false, "line": row["line"], "reason": reason}),
            })
        })
        .step("load_db", move |input| {
            let db = db.clone();
            async move {
                let batch = batch_id(&input)?;
                let results = field(&input, &["validate_rows"])?
                    .as_array()
                    .ok_or("validate_rows output is not an array")?;
                let valid: Vec<&Value> = results
                    .iter()
                    .filter(|r| r["valid"] == json!(true))
                    .map(|r| &r["row"])
                    .collect();
                let rejected: Vec<String> = results
                    .iter()
                    .filter(|r| r["valid"] != json!(true))
                    .map(|r| {
                        format!(
                            "line {}: {}",
                            r["line"],
                            r["reason"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                // One statement, so a retry after a failure cannot load a batch twice
                // (the primary key is (batch, line)).
                db.execute(
                    "INSERT INTO demo_customers \
                       (batch, line, name, email, amount_cents, country, signup_date) \
                     SELECT $1::uuid, r.line, r.name, r.email, r.amount_cents, r.country, r.signup_date \
                     FROM jsonb_to_recordset($2::jsonb) AS r(line int, name text, email text, \
                          amount_cents bigint, country text, signup_date date) \
                     ON CONFLICT (batch, line) DO NOTHING",
                    &[&batch, &json!(valid)],
                )
                .await
                .map_err(|e| format!("insert into demo_customers: {e}"))?;
                Ok(json!({"loaded": valid.len(), "rejected": rejected}))
            }
        })
}

/// Validates and normalises one CSV row, or says why it is rejected.
pub fn validate_customer(row: &Value) -> Result<Value, String> {
    let text = |key: &str| row[key].as_str().unwrap_or("").trim().to_string();
    let name = text("name");
    if name.is_empty() {
        return Err("missing name".into());
    }
    let email = text("email").to_lowercase();
    if !is_email(&email) {
        return Err(format!("invalid email {email:?}"));
    }
    let amount = text("amount");
    let amount_cents = parse_cents(&amount)?;
    if amount_cents < 0 {
        return Err(format!("negative amount {amount}"));
    }
    let country = text("country");
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!("country {country:?} is not a 2-letter code"));
    }
    let signup_date = text("signup_date");
    if !is_date(&signup_date) {
        return Err(format!("signup_date {signup_date:?} is not a date"));
    }
    Ok(json!({
        "line": row["line"],
        "name": name,
        "email": email,
        "amount_cents": amount_cents,
        "country": country.to_uppercase(),
        "signup_date": signup_date,
    }))
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|p| !p.is_empty())
        && !s.chars().any(char::is_whitespace)
}

/// "12.5" -> 1250, "-0.01" -> -1; at most two decimals.
fn parse_cents(s: &str) -> Result<i64, String> {
    let not_a_number = || format!("amount {s:?} is not a number");
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || frac.len() > 2 {
        return Err(not_a_number());
    }
    let cents = whole.parse::<i64>().map_err(|_| not_a_number())? * 100
        + format!("{frac:0<2}")
            .parse::<i64>()
            .map_err(|_| not_a_number())?;
    Ok(if negative { -cents } else { cents })
}

fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    s.len() == 10 && (1..=days).contains(&d)
}

// ---------------------------------------------------------------------------------------
// The workflow an LLM wrote (demo/data/llm_workflow.json)
// ---------------------------------------------------------------------------------------

fn triage(db: Arc<Client>) -> StepFunctions {
    StepFunctions::new()
        .step("fetch_tickets", |input| async move {
            Ok(field(&input, &["run", "tickets"])?.clone())
        })
        .step("classify_ticket", move |input| {
            let db = db.clone();
            async move {
                let ticket = field(&input, &["item"])?;
                let id = ticket["id"].as_str().ok_or("ticket without id")?.to_string();
                work(200 + (input["index"].as_u64().unwrap_or(0) % 3) * 100).await;
                if ticket["simulate_rate_limit"] == json!(true) {
                    // The first attempt of this ticket, whichever process gets it, is refused
                    // as a model API would under load; the engine retries it after backoff.
                    let batch = batch_id(&input)?;
                    let first = db
                        .execute(
                            "INSERT INTO demo_rate_limits (batch, ticket_id) VALUES ($1, $2) \
                             ON CONFLICT DO NOTHING",
                            &[&batch, &id],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    if first == 1 {
                        return Err("429 Too Many Requests from the model API (simulated)".into());
                    }
                }
                let text = format!(
                    "{} {}",
                    ticket["subject"].as_str().unwrap_or(""),
                    ticket["body"].as_str().unwrap_or("")
                )
                .to_lowercase();
                let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
                let category = if has(&["refund", "charge", "invoice", "billing"]) {
                    "billing"
                } else if has(&["down", "outage", "timeout", "time out"]) {
                    "incident"
                } else if has(&["error", "crash", "broken", "bug"]) {
                    "bug"
                } else if has(&["password", "log in", "login", "2fa", "locked"]) {
                    "account"
                } else {
                    "question"
                };
                let urgent = has(&["urgent", "asap", "down", "outage"]);
                Ok(json!({"id": id, "category": category, "priority": if urgent {"urgent"} else {"normal"}}))
            }
        })
        .step("flag_urgent", |input| async move {
            let classified = field(&input, &["classify_ticket"])?
                .as_array()
                .ok_or("classify_ticket output is not an array")?;
            let urgent: Vec<&Value> = classified
                .iter()
                .filter(|c| c["priority"] == json!("urgent"))
                .map(|c| &c["id"])
                .collect();
            Ok(json!({"page_oncall": !urgent.is_empty(), "urgent": urgent}))
        })
        .step("write_summary", |input| async move {
            let classified = field(&input, &["classify_ticket"])?
                .as_array()
                .ok_or("classify_ticket output is not an array")?;
            let tickets = field(&input, &["fetch_tickets"])?
                .as_array()
                .ok_or("fetch_tickets output is not an array")?;
            let mut counts: Vec<(String, usize)> = Vec::new();
            for c in classified {
                let cat = c["category"].as_str().unwrap_or("?").to_string();
                match counts.iter_mut().find(|(k, _)| *k == cat) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((cat, 1)),
                }
            }
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            Ok(json!({
                "tickets": tickets.len(),
                "by_category": counts.iter().map(|(k, n)| (k.clone(), json!(n))).collect::<Map<_, _>>(),
                "text": format!("{} new tickets: {}.", tickets.len(), parts.join(", ")),
            }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, email: &str, amount: &str, country: &str, date: &str) -> Value {
        json!({"line": 9, "name": name, "email": email, "amount": amount,
               "country": country, "signup_date": date})
    }

    #[test]
    fn a_valid_row_is_normalised() {
        assert_eq!(
            validate_customer(&row(
                " Ada Lovelace ",
                "Ada@Example.com",
                "12.5",
                "gb",
                "2024-02-29"
            ))
            .unwrap(),
            json!({"line": 9, "name": "Ada Lovelace", "email": "ada@example.com",
                   "amount_cents": 1250, "country": "GB", "signup_date": "2024-02-29"})
        );
    }

    #[test]
    fn invalid_rows_say_why() {
        let reason = |r: Value| validate_customer(&r).unwrap_err();
        assert_eq!(
            reason(row("", "a@b.c", "1", "US", "2024-01-01")),
            "missing name"
        );
        assert_eq!(
            reason(row("A", "a@", "1", "US", "2024-01-01")),
            "invalid email \"a@\""
        );
        assert_eq!(
            reason(row("A", "a b@c.d", "1", "US", "2024-01-01")),
            "invalid email \"a b@c.d\""
        );
        assert_eq!(
            reason(row("A", "a@b.c", "-0.01", "US", "2024-01-01")),
            "negative amount -0.01"
        );
        assert_eq!(
            reason(row("A", "a@b.c", "twelve", "US", "2024-01-01")),
            "amount \"twelve\" is not a number"
        );
        assert_eq!(
            reason(row("A", "a@b.c", "1", "Finland", "2024-01-01")),
            "country \"Finland\" is not a 2-letter code"
        );
        assert_eq!(
            reason(row("A", "a@b.c", "1", "FI", "2023-02-29")),
            "signup_date \"2023-02-29\" is not a date"
        );
    }
}
