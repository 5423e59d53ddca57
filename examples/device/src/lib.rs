//! outguard on a device: every table is a `static` buffer, nothing is allocated.
//!
//! Built with `cargo build --release --target thumbv7em-none-eabihf` to measure the code size
//! of a complete engine (check + record + release + snapshot). The exported functions are what
//! a firmware would call; the panic handler is never reached (the core has no panics on any
//! input) but a `no_std` staticlib must name one.
#![no_std]

use core::net::{IpAddr, Ipv4Addr};
use core::panic::PanicInfo;
use core::ptr::addr_of_mut;
use outguard::*;

const CAP: Capacity = Capacity {
    tenants: 8,
    domains: 32,
    connectors: 8,
    ranges: 32,
    name_bytes: 1024,
    overrides: 2,
    audit_depth: 8,
    threshold_slots: 8,
    unregistered_slots: 8,
};

const L: Layout = CAP.layout();

static mut TENANTS: [TenantRecord; L.tenants] = [TenantRecord::EMPTY; L.tenants];
static mut TENANT_INDEX: [u32; L.tenant_index] = [0; L.tenant_index];
static mut DOMAINS: [DomainEntry; L.domains] = [DomainEntry::EMPTY; L.domains];
static mut CONNECTORS: [ConnectorRecord; L.connectors] = [ConnectorRecord::EMPTY; L.connectors];
static mut CONNECTOR_INDEX: [u32; L.connector_index] = [0; L.connector_index];
static mut RANGES: [RangeEntry; L.ranges] = [RangeEntry::EMPTY; L.ranges];
static mut OVERRIDES: [RuleSetRecord; L.overrides] = [RuleSetRecord::EMPTY; L.overrides];
static mut COUNTERS: [u32; L.counters] = [0; L.counters];
static mut AUDIT: [Event; L.audit] = [Event::EMPTY; L.audit];
static mut NAMES: [u8; L.names] = [0; L.names];
static mut ENGINE: Option<Engine<SliceStorage<'static>>> = None;

/// Builds the engine over the static buffers with one tenant; returns 0 on success.
#[no_mangle]
#[allow(unsafe_code, static_mut_refs)]
pub extern "C" fn device_init() -> i32 {
    // SAFETY: called once at start-up, before any other function of this file, from one thread.
    let store = unsafe {
        SliceStorage(PartsMut {
            tenants: &mut *addr_of_mut!(TENANTS),
            tenant_index: &mut *addr_of_mut!(TENANT_INDEX),
            domains: &mut *addr_of_mut!(DOMAINS),
            connectors: &mut *addr_of_mut!(CONNECTORS),
            connector_index: &mut *addr_of_mut!(CONNECTOR_INDEX),
            ranges: &mut *addr_of_mut!(RANGES),
            overrides: &mut *addr_of_mut!(OVERRIDES),
            counters: &mut *addr_of_mut!(COUNTERS),
            audit: &mut *addr_of_mut!(AUDIT),
            names: &mut *addr_of_mut!(NAMES),
        })
    };
    let Ok(mut e) = Engine::new(store, CAP, RuleSet::default()) else { return -1 };
    let Ok(t) = e.add_tenant("contoso", false) else { return -2 };
    if e.add_domain(t, "contoso.com", true, true).is_err() {
        return -3;
    }
    if let Ok(r) = Cidr::parse("192.0.2.0/24") {
        let _ = e.add_low_reputation(r);
    }
    // SAFETY: single-threaded start-up, see above.
    unsafe { *addr_of_mut!(ENGINE) = Some(e) };
    0
}

/// Evaluates one message from `mail_from` (bytes) at `now`; returns the reason number (0 accept).
#[no_mangle]
#[allow(unsafe_code, static_mut_refs)]
pub extern "C" fn device_evaluate(now: u64, mail_from: *const u8, len: usize, ip: u32, spam: bool) -> i32 {
    // SAFETY: the caller passes a valid buffer; the engine is used from one thread.
    let (e, from) = unsafe {
        let Some(e) = (*addr_of_mut!(ENGINE)).as_mut() else { return -1 };
        (e, core::slice::from_raw_parts(mail_from, len))
    };
    let msg = Message {
        mail_from: from,
        tenant: Some("contoso"),
        client_ip: Some(IpAddr::V4(Ipv4Addr::from(ip))),
        recipients: 1,
        ..Message::default()
    };
    let verdict = if spam { Verdict::Spam } else { Verdict::Clean };
    let (d, _) = e.evaluate(now, &msg, verdict);
    d.reason.map_or(0, |r| r as i32)
}

/// Releases the tenant's blocks; returns the number of events.
#[no_mangle]
#[allow(unsafe_code, static_mut_refs)]
pub extern "C" fn device_release(now: u64) -> i32 {
    // SAFETY: single-threaded use.
    let Some(e) = (unsafe { (*addr_of_mut!(ENGINE)).as_mut() }) else { return -1 };
    match e.tenant("contoso").map(|t| e.release(t, None, now)) {
        Some(Ok(ev)) => ev.len() as i32,
        _ => -1,
    }
}

/// Writes a snapshot into `out`; returns its length or -1.
#[no_mangle]
#[allow(unsafe_code, static_mut_refs)]
pub extern "C" fn device_snapshot(out: *mut u8, len: usize) -> i32 {
    // SAFETY: the caller passes a valid buffer; single-threaded use.
    let (e, buf) = unsafe {
        let Some(e) = (*addr_of_mut!(ENGINE)).as_ref() else { return -1 };
        (e, core::slice::from_raw_parts_mut(out, len))
    };
    e.write_snapshot(buf).map_or(-1, |n| n as i32)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}
