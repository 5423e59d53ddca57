//! The shared scenario table (`fixtures/scenario-table/`): SPEC §1 as data, run here through
//! the core's API and by the Python package's tests through its own, so both are held to the
//! same rows. The file's header documents the format.
#![cfg(feature = "std")]

use std::net::IpAddr;

use outguard::policy::{HeapEngine, Policy};
use outguard::{Message, Rule, Verdict};
use toml_span::value::{Table, Value};

/// `T` of the table: its times are seconds after it.
const T: u64 = 1_790_000_000;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenario-table")
}

fn engine() -> HeapEngine {
    let text = std::fs::read_to_string(dir().join("policy.toml")).expect("policy file");
    Policy::from_toml(&text, "policy.toml", None)
        .expect("policy loads")
        .build()
        .expect("engine builds")
}

fn get<'a, 'de>(t: &'a Table<'de>, key: &str) -> Option<&'a Value<'de>> {
    t.get(key)
}

fn text<'a>(t: &'a Table<'_>, key: &str) -> Option<&'a str> {
    get(t, key).map(|v| v.as_str().unwrap_or_else(|| panic!("{key}: not a string")))
}

fn flag(t: &Table<'_>, key: &str) -> bool {
    get(t, key).is_some_and(|v| v.as_bool().unwrap_or_else(|| panic!("{key}: not a bool")))
}

fn int(t: &Table<'_>, key: &str, default: i64) -> i64 {
    get(t, key).map_or(default, |v| {
        v.as_integer()
            .unwrap_or_else(|| panic!("{key}: not an integer"))
    })
}

fn table<'a, 'de>(v: &'a Value<'de>) -> &'a Table<'de> {
    v.as_table().expect("a table")
}

/// A message of the table; every key must be one the table may use.
fn message<'a>(t: &'a Table<'_>, ip: &'a mut Option<IpAddr>) -> Message<'a> {
    for k in t.keys() {
        let known = [
            "mail_from",
            "tenant",
            "client_ip",
            "auth_user",
            "cert_domain",
            "forwarded",
            "spf_pass",
            "dkim_pass",
        ];
        assert!(
            known.contains(&k.name.as_ref()),
            "unknown message field {}",
            k.name
        );
    }
    *ip = text(t, "client_ip").map(|s| s.parse().expect("client_ip parses"));
    Message {
        tenant: text(t, "tenant"),
        client_ip: *ip,
        auth_user: text(t, "auth_user"),
        cert_domain: text(t, "cert_domain"),
        forwarded: flag(t, "forwarded"),
        spf_pass: flag(t, "spf_pass"),
        dkim_pass: flag(t, "dkim_pass"),
        ..Message::new(text(t, "mail_from").expect("mail_from"))
    }
}

/// Every key of `t` is one of `known`, and there are `count` of them (a misspelt key would
/// otherwise make a row assert nothing).
fn assert_keys(t: &Table<'_>, known: &[&str], count: usize) {
    for k in t.keys() {
        assert!(known.contains(&k.name.as_ref()), "unknown key {}", k.name);
    }
    assert_eq!(
        t.len(),
        count,
        "keys {:?}",
        t.keys().map(|k| &k.name).collect::<Vec<_>>()
    );
}

fn rows<'a, 'de>(doc: &'a Value<'de>, kind: &str) -> &'a [Value<'de>] {
    get(table(doc), kind)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("no [[{kind}]] rows"))
}

#[test]
fn check_rows() {
    let src = std::fs::read_to_string(dir().join("scenarios.toml")).expect("table file");
    let doc = toml_span::parse(&src).expect("table parses");
    let e = engine();
    let rows = rows(&doc, "check");
    assert!(rows.len() >= 25, "{} rows", rows.len());
    for row in rows {
        let row = table(row);
        assert_keys(row, &["message", "expect"], 2);
        assert_keys(
            table(get(row, "expect").expect("expect")),
            &["code", "sender_class", "tenant", "attribution"],
            4,
        );
        let mut ip = None;
        let m = message(table(get(row, "message").expect("message")), &mut ip);
        let want = table(get(row, "expect").expect("expect"));
        let d = e.check(T, &m);
        let what = format!("{m:?}");
        assert_eq!(
            d.code().unwrap_or(""),
            text(want, "code").unwrap(),
            "code of {what}"
        );
        assert_eq!(d.accepted(), d.code().is_none(), "{what}");
        assert_eq!(
            d.sender_class.map_or("", |c| c.name()),
            text(want, "sender_class").unwrap(),
            "sender class of {what}"
        );
        assert_eq!(
            d.tenant.map_or("", |t| e.tenant_name(t)),
            text(want, "tenant").unwrap(),
            "tenant of {what}"
        );
        assert_eq!(
            d.attribution.map_or("", |a| a.name()),
            text(want, "attribution").unwrap(),
            "attribution of {what}"
        );
        if let Some(reply) = d.reply() {
            assert!(reply.starts_with(&format!("550 {} ", d.code().unwrap())));
        }
    }
}

#[test]
fn sequence_rows() {
    let src = std::fs::read_to_string(dir().join("scenarios.toml")).expect("table file");
    let doc = toml_span::parse(&src).expect("table parses");
    let seqs = rows(&doc, "sequence");
    assert!(seqs.len() >= 5, "{} sequences", seqs.len());
    for seq in seqs {
        let seq = table(seq);
        let name = text(seq, "name").expect("name");
        let mut e = engine();
        let steps = get(seq, "steps").and_then(Value::as_array).expect("steps");
        for (k, step) in steps.iter().enumerate() {
            let step = table(step);
            let ops = [
                "evaluate",
                "check",
                "release",
                "mark_lapsed",
                "mark_active",
                "expire",
            ];
            let others = ["at", "times", "verdict", "rule", "expect", "events"];
            assert_keys(step, &[&ops[..], &others[..]].concat(), step.len());
            assert_eq!(
                ops.iter().filter(|o| step.contains_key(**o)).count(),
                1,
                "{name}: step {k} needs exactly one operation"
            );
            let at = T + int(step, "at", 0) as u64;
            let mut codes: Vec<String> = Vec::new();
            let mut events: Vec<&'static str> = Vec::new();
            let kinds = |evs: &[outguard::Event]| -> Vec<&'static str> {
                evs.iter()
                    .map(|ev| ev.kind().expect("event kind").name())
                    .collect()
            };
            let tenant = |key: &str| {
                let id = text(step, key).expect("tenant id");
                e.tenant(id)
                    .unwrap_or_else(|| panic!("{name}: no tenant {id}"))
            };
            if let Some(m) = get(step, "evaluate") {
                let mut ip = None;
                let m = message(table(m), &mut ip);
                let v = text(step, "verdict").unwrap_or("clean");
                let v = Verdict::from_name(v).expect("verdict");
                for i in 0..int(step, "times", 1) as u64 {
                    let (d, evs) = e.evaluate(at + i, &m, v);
                    codes.push(d.code().unwrap_or("").into());
                    events.extend(kinds(&evs));
                }
            } else if let Some(m) = get(step, "check") {
                let mut ip = None;
                let m = message(table(m), &mut ip);
                codes.push(e.check(at, &m).code().unwrap_or("").into());
            } else if get(step, "release").is_some() {
                let t = tenant("release");
                let rule = text(step, "rule").map(|r| Rule::from_name(r).expect("rule"));
                events.extend(kinds(&e.release(t, rule, at).expect("release")));
            } else if get(step, "mark_lapsed").is_some() {
                let t = tenant("mark_lapsed");
                events.extend(kinds(&e.mark_lapsed(t, at).expect("mark_lapsed")));
            } else if get(step, "mark_active").is_some() {
                let t = tenant("mark_active");
                events.extend(kinds(&e.mark_active(t, at).expect("mark_active")));
            } else if get(step, "expire").is_some() {
                let mut all = Vec::new();
                e.expire(at, |ev| all.push(*ev));
                events.extend(kinds(&all));
            } else {
                panic!("{name}: step {k} has no operation");
            }
            if let Some(want) = text(step, "expect") {
                assert!(!codes.is_empty(), "{name}: step {k} decides nothing");
                assert!(
                    codes.iter().all(|c| c == want),
                    "{name}: step {k}: {codes:?}, want {want}"
                );
            }
            if let Some(want) = get(step, "events").and_then(Value::as_array) {
                let want: Vec<&str> = want.iter().map(|v| v.as_str().expect("kind")).collect();
                assert_eq!(events, want, "{name}: step {k}");
            }
        }
    }
}
