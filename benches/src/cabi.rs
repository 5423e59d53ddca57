//! Calling outguard through its C ABI (crate `outguard-ffi`) from Rust, as a C caller would:
//! NUL-terminated tenant id, client IP as text, the decision written through a pointer.

use std::ffi::{c_char, CString};
use std::mem::MaybeUninit;
use std::ptr;

use outguard::policy::{HeapEngine, Policy};
use outguard_ffi::{
    og_decision, og_engine, og_engine_check, og_engine_free, og_ip, og_message, og_result,
    OG_IP_V4, OG_IP_V6,
};

use crate::fixture::{self, Query};

/// Policy text: `tenants` tenants with the fixture's two domains each, inline.
pub fn policy(tenants: u32) -> String {
    let mut s = String::new();
    for i in 0..tenants {
        s += &format!(
            "[[tenants]]\nid = \"{}\"\ndomains = [\"{}\", {{ name = \"{}\", subdomains = true }}]\n",
            fixture::tenant_name(i),
            fixture::domain_name(i, 0),
            fixture::domain_name(i, 1),
        );
    }
    s
}

/// The message of the `hot` rows of the C and Python comparisons (the Python timing in
/// `scripts/bench` sends the same one).
pub fn hot_query() -> Query {
    Query {
        tenant: fixture::tenant_name(0),
        mail_from: format!("alice@{}", fixture::domain_name(0, 0)),
        ip: std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5)),
    }
}

/// The engine of `policy(tenants)`, built in Rust.
pub fn rust_engine(text: &str) -> HeapEngine {
    Policy::from_toml(text, "bench.toml", None)
        .and_then(|p| p.build())
        .expect("policy")
}

/// An `og_engine` handle for a policy text, freed on drop.
#[derive(Debug)]
pub struct Handle(*mut og_engine);

impl Handle {
    /// `og_engine_new_from_toml`.
    pub fn new(text: &str) -> Handle {
        let mut h: *mut og_engine = ptr::null_mut();
        let r = outguard_ffi::og_engine_new_from_toml(
            text.as_ptr().cast::<c_char>(),
            text.len(),
            ptr::null(),
            ptr::null(),
            &mut h,
            ptr::null_mut(),
            0,
        );
        assert!(
            r == og_result::Ok && !h.is_null(),
            "og_engine_new_from_toml"
        );
        Handle(h)
    }

    /// `og_engine_check`; whether it succeeded and accepted.
    #[inline]
    pub fn check(&self, now: u64, m: &og_message) -> bool {
        let mut d = MaybeUninit::<og_decision>::uninit();
        let r = og_engine_check(self.0, now, m, d.as_mut_ptr());
        // The decision is written on success only.
        r == og_result::Ok
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        og_engine_free(self.0);
    }
}

/// A message as a C caller holds it.
#[derive(Debug)]
pub struct CMessage {
    mail_from: String,
    tenant: CString,
    ip: CString,
    addr: og_ip,
}

impl CMessage {
    /// The C form of a query.
    pub fn of(q: &Query) -> CMessage {
        CMessage {
            mail_from: q.mail_from.clone(),
            tenant: CString::new(q.tenant.as_str()).expect("no NUL"),
            ip: CString::new(q.ip.to_string()).expect("no NUL"),
            addr: match q.ip {
                std::net::IpAddr::V4(a) => {
                    let mut bytes = [0u8; 16];
                    bytes[..4].copy_from_slice(&a.octets());
                    og_ip {
                        family: OG_IP_V4,
                        bytes,
                    }
                }
                std::net::IpAddr::V6(a) => og_ip {
                    family: OG_IP_V6,
                    bytes: a.octets(),
                },
            },
        }
    }

    /// The `og_message` pointing into it.
    #[inline]
    pub fn c(&self) -> og_message {
        og_message {
            mail_from: self.mail_from.as_ptr().cast::<c_char>(),
            mail_from_len: self.mail_from.len(),
            tenant: self.tenant.as_ptr(),
            tenant_len: 0,
            auth_user: ptr::null(),
            cert_domain: ptr::null(),
            client_ip: self.ip.as_ptr(),
            flags: 0,
            recipients: 1,
            client_addr: og_ip::default(),
        }
    }

    /// The `og_message` pointing into it, with the client address in binary form
    /// (`client_addr`) instead of text, as a milter holding a `sockaddr` sends it.
    #[inline]
    pub fn c_binary(&self) -> og_message {
        og_message {
            client_ip: ptr::null(),
            client_addr: self.addr,
            ..self.c()
        }
    }

    /// [`CMessage::c_binary`] with the tenant id's length given (`tenant_len`), as the Rust
    /// call has it: no length scan.
    #[inline]
    pub fn c_binary_len(&self) -> og_message {
        og_message {
            tenant_len: self.tenant.as_bytes().len(),
            ..self.c_binary()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{queries, NOW};

    #[test]
    fn c_and_rust_agree() {
        let text = policy(10);
        let (h, e) = (Handle::new(&text), rust_engine(&text));
        for q in queries(10, 100, 1) {
            assert!(h.check(NOW, &CMessage::of(&q).c()));
            assert!(h.check(NOW, &CMessage::of(&q).c_binary()));
            assert!(h.check(NOW, &CMessage::of(&q).c_binary_len()));
            assert!(e.check(NOW, &q.message()).accepted());
        }
    }
}
