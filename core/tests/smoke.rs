use outguard::*;

fn engine() -> Engine<HeapStorage> {
    let cap = Capacity::default();
    let mut rules = RuleSet::default();
    rules.unregistered.limit = 3;
    rules.threshold.min_messages = 10;
    rules.threshold.min_suspicious = 5;
    let mut e = Engine::new(HeapStorage::new(&cap), cap, rules).unwrap();
    let t = e.add_tenant("contoso", true).unwrap();
    e.add_domain(t, "contoso.com", true, true).unwrap();
    e
}

#[test]
fn unregistered_allowance() {
    let mut e = engine();
    let now = 1_790_000_000;
    let bad = Message {
        tenant: Some("contoso"),
        ..Message::new("x@evil.example")
    };
    let good = Message {
        tenant: Some("contoso"),
        ..Message::new("x@mail.contoso.com")
    };
    for i in 0..3 {
        let (d, ev) = e.evaluate(now + i, &bad, Verdict::Clean);
        assert!(d.accepted(), "{i}");
        assert_eq!(d.sender_class, Some(SenderClass::Unregistered));
        assert_eq!(ev.len(), if i == 2 { 1 } else { 0 });
    }
    let d = e.check(now + 5, &bad);
    assert_eq!(d.reason, Some(Reason::UnregisteredDomain));
    let d = e.check(now + 5, &good);
    assert!(d.accepted());
    assert_eq!(d.sender_class, Some(SenderClass::Registered));
}
