//! RFC 3464 delivery status notifications (NDRs) for refused mail.
//!
//! [`render`] writes a complete `multipart/report; report-type=delivery-status` message
//! into any [`core::fmt::Write`], with CRLF line endings and without allocating:
//!
//! 1. `text/plain; charset=utf-8`: a short localized note, the sender explanation, the
//!    administrator explanation and the exact SMTP reply line;
//! 2. `message/delivery-status`: `Reporting-MTA`, `Arrival-Date` and, per failed
//!    recipient, `Final-Recipient`, `Action: failed`, `Status` and `Diagnostic-Code`;
//! 3. optionally `text/rfc822-headers` with the original message's header section.
//!
//! Every caller-supplied value is checked before anything is written, so a bad value
//! produces no output at all, and CR, LF or any other control character in a header
//! value is refused: header injection is impossible.

use core::fmt::{self, Write};

use crate::explain::{self, Audience, Lang};
use crate::Reason;

/// What an NDR reports. All strings are borrowed; nothing is copied.
#[derive(Clone, Copy, Debug)]
pub struct Ndr<'a> {
    /// Host name of the MTA writing the report, such as `"mx.example.net"` (no whitespace).
    pub reporting_mta: &'a str,
    /// The `From:` of the NDR, such as `"MAILER-DAEMON@mx.example.net"`.
    pub from: &'a str,
    /// The `To:` of the NDR: the original envelope sender, who receives the bounce.
    pub to: &'a str,
    /// The original recipients that failed. Normally at least one; with none, the
    /// report has no per-recipient block.
    pub recipients: &'a [&'a str],
    /// Why the message was refused.
    pub reason: Reason,
    /// The language of the human-readable part and the subject.
    pub lang: Lang,
    /// Unix seconds at which the original message arrived (`Arrival-Date:`).
    pub arrival: u64,
    /// Unix seconds now (`Date:` of the NDR).
    pub now: u64,
    /// The MIME boundary: 1 to 70 RFC 2046 `bchars`, not ending in a space.
    pub boundary: &'a str,
    /// The NDR's Message-ID without angle brackets, such as `"123.abc@mx.example.net"`.
    pub message_id: &'a str,
    /// If `Some`, the original message's header section, sent as a third part
    /// (`text/rfc822-headers`). Only the header section is used (up to the first empty
    /// line); line endings are normalized to CRLF.
    pub original_headers: Option<&'a str>,
}

/// The longest header-ish value accepted (keeps every line far below 998 octets).
const MAX_FIELD: usize = 900;
/// Width at which the human-readable text is wrapped, in characters.
const WRAP: usize = 76;
/// `9999-12-31T23:59:59Z`, the last second with a four-digit year.
const MAX_DATE: u64 = 253_402_300_799;

/// Writes the whole NDR message (header section and body) with CRLF line endings.
///
/// Returns `Err(core::fmt::Error)` without writing anything when an input is invalid:
/// a boundary that is empty, longer than 70 characters, ends with a space or holds a
/// character outside RFC 2046 `bchars`; an empty or over-long (more than 900 bytes)
/// `reporting_mta`, `from`, `to`, recipient or `message_id`; a control character (CR,
/// LF, NUL, ...) in any of them; whitespace in `reporting_mta` or `message_id`; a
/// `message_id` without `@` or with `<`, `>` or non-ASCII; or original headers with a
/// line that starts with the boundary delimiter.
///
/// # Errors
///
/// `Err(core::fmt::Error)` for an invalid input as above (nothing written), or when
/// `out` fails, for example a fixed-size buffer that is too small (output truncated).
pub fn render<W: Write>(ndr: &Ndr<'_>, out: &mut W) -> fmt::Result {
    validate(ndr)?;
    let b = ndr.boundary;
    let reason = ndr.reason;

    // Header section.
    write!(out, "From: {}\r\n", ndr.from)?;
    write!(out, "To: {}\r\n", ndr.to)?;
    out.write_str("Date: ")?;
    write_rfc5322_date(out, ndr.now)?;
    out.write_str("\r\n")?;
    write!(out, "Message-ID: <{}>\r\n", ndr.message_id)?;
    write_subject(out, explain::title(reason, ndr.lang))?;
    out.write_str("MIME-Version: 1.0\r\n")?;
    out.write_str("Auto-Submitted: auto-replied\r\n")?;
    write!(
        out,
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{b}\"\r\n"
    )?;
    out.write_str("\r\n")?;
    out.write_str("This is a MIME-formatted message.\r\n")?;

    // Part 1: the human-readable explanation.
    write!(out, "--{b}\r\n")?;
    out.write_str("Content-Type: text/plain; charset=utf-8\r\n")?;
    out.write_str("Content-Transfer-Encoding: 8bit\r\n")?;
    write!(out, "Content-Language: {}\r\n\r\n", ndr.lang.tag())?;
    let l = labels(ndr.lang);
    write_wrapped(out, l.intro)?;
    out.write_str("\r\n")?;
    if !ndr.recipients.is_empty() {
        write!(out, "{}\r\n", l.recipients)?;
        for rcpt in ndr.recipients {
            write!(out, "  {rcpt}\r\n")?;
        }
        out.write_str("\r\n")?;
    }
    write!(out, "{}\r\n", l.why)?;
    write_wrapped(out, explain::explain(reason, ndr.lang, Audience::Sender))?;
    out.write_str("\r\n")?;
    write!(out, "{}\r\n", l.admin)?;
    write_wrapped(out, explain::explain(reason, ndr.lang, Audience::Admin))?;
    out.write_str("\r\n")?;
    write!(out, "{}\r\n  {}\r\n\r\n", l.reply, reason.reply())?;

    // Part 2: the machine-readable delivery status.
    write!(out, "--{b}\r\n")?;
    out.write_str("Content-Type: message/delivery-status\r\n\r\n")?;
    write!(out, "Reporting-MTA: dns; {}\r\n", ndr.reporting_mta)?;
    out.write_str("Arrival-Date: ")?;
    write_rfc5322_date(out, ndr.arrival)?;
    out.write_str("\r\n\r\n")?;
    for rcpt in ndr.recipients {
        write!(out, "Final-Recipient: rfc822; {rcpt}\r\n")?;
        out.write_str("Action: failed\r\n")?;
        write!(out, "Status: {}\r\n", reason.enhanced_code())?;
        write!(out, "Diagnostic-Code: smtp; {}\r\n\r\n", reason.reply())?;
    }

    // Part 3: the original header section.
    if let Some(headers) = ndr.original_headers {
        write!(out, "--{b}\r\n")?;
        out.write_str("Content-Type: text/rfc822-headers\r\n")?;
        if !headers.is_ascii() {
            out.write_str("Content-Transfer-Encoding: 8bit\r\n")?;
        }
        out.write_str("\r\n")?;
        for line in header_lines(headers) {
            // A lone CR or a NUL inside a line becomes a space: no bare CR in the output.
            for (i, seg) in line.split(['\r', '\0']).enumerate() {
                if i > 0 {
                    out.write_char(' ')?;
                }
                out.write_str(seg)?;
            }
            out.write_str("\r\n")?;
        }
        out.write_str("\r\n")?;
    }

    write!(out, "--{b}--\r\n")
}

/// Formats Unix seconds as an RFC 5322 date in UTC, such as
/// `"Sun, 22 Nov 2026 15:46:39 +0000"`.
///
/// Times after `9999-12-31T23:59:59Z` are written as that instant, so the year always
/// has four digits; no input overflows or panics.
///
/// # Errors
///
/// Only when `out` fails.
pub fn write_rfc5322_date<W: Write>(out: &mut W, unix: u64) -> fmt::Result {
    let t = if unix > MAX_DATE { MAX_DATE } else { unix };
    // After the clamp, days <= 2_932_896, so nothing below can overflow or underflow;
    // the saturating forms only make that visible.
    let days = t / 86_400;
    let secs = t % 86_400;
    let (hour, minute, second) = (secs / 3_600, secs % 3_600 / 60, secs % 60);
    // 1970-01-01 was a Thursday; 0 = Sunday.
    let weekday = days.saturating_add(4) % 7;
    // Civil date from days since the epoch (H. Hinnant's algorithm, unsigned form:
    // day 0 of the shifted calendar is 0000-03-01).
    let z = days.saturating_add(719_468);
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146_096
    let yoe = doe
        .saturating_sub(doe / 1_460)
        .saturating_add(doe / 36_524)
        .saturating_sub(doe / 146_096)
        / 365; // year of era, 0..=399
    let doy = doe.saturating_sub(
        yoe.saturating_mul(365)
            .saturating_add(yoe / 4)
            .saturating_sub(yoe / 100),
    ); // day of year from March 1st, 0..=365
    let mp = doy.saturating_mul(5).saturating_add(2) / 153; // 0..=11, March = 0
    let day = doy
        .saturating_sub(mp.saturating_mul(153).saturating_add(2) / 5)
        .saturating_add(1);
    let month = if mp < 10 {
        mp.saturating_add(3)
    } else {
        mp.saturating_sub(9)
    };
    let year = era
        .saturating_mul(400)
        .saturating_add(yoe)
        .saturating_add(u64::from(month <= 2));
    write!(
        out,
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        weekday_name(weekday),
        day,
        month_name(month),
        year,
        hour,
        minute,
        second
    )
}

fn weekday_name(d: u64) -> &'static str {
    match d {
        0 => "Sun",
        1 => "Mon",
        2 => "Tue",
        3 => "Wed",
        4 => "Thu",
        5 => "Fri",
        _ => "Sat",
    }
}

fn month_name(m: u64) -> &'static str {
    match m {
        1 => "Jan",
        2 => "Feb",
        3 => "Mar",
        4 => "Apr",
        5 => "May",
        6 => "Jun",
        7 => "Jul",
        8 => "Aug",
        9 => "Sep",
        10 => "Oct",
        11 => "Nov",
        _ => "Dec",
    }
}

/// Localized fixed lines of the human-readable part.
struct Labels {
    intro: &'static str,
    recipients: &'static str,
    why: &'static str,
    admin: &'static str,
    reply: &'static str,
}

fn labels(lang: Lang) -> Labels {
    match lang {
        Lang::En => Labels {
            intro: "This is an automatically generated delivery status notification: your \
                    message could not be delivered.",
            recipients: "Failed recipients:",
            why: "Why did I get this?",
            admin: "What can the administrator do?",
            reply: "Server reply:",
        },
        Lang::Uk => Labels {
            intro: "Це автоматичне повідомлення про стан доставки: ваш лист не вдалося \
                    доставити.",
            recipients: "Одержувачі, яким лист не доставлено:",
            why: "Чому ви отримали це повідомлення?",
            admin: "Що може зробити адміністратор?",
            reply: "Відповідь сервера:",
        },
        Lang::Pl => Labels {
            intro: "To jest automatyczne powiadomienie o stanie doręczenia: nie udało się \
                    dostarczyć Twojej wiadomości.",
            recipients: "Odbiorcy, do których wiadomość nie dotarła:",
            why: "Dlaczego otrzymujesz tę wiadomość?",
            admin: "Co może zrobić administrator?",
            reply: "Odpowiedź serwera:",
        },
        Lang::PtBr => Labels {
            intro: "Esta é uma notificação automática de status de entrega: não foi possível \
                    entregar sua mensagem.",
            recipients: "Destinatários que não receberam a mensagem:",
            why: "Por que você recebeu esta mensagem?",
            admin: "O que o administrador pode fazer?",
            reply: "Resposta do servidor:",
        },
    }
}

/// Checks every caller-supplied value before anything is written.
fn validate(ndr: &Ndr<'_>) -> fmt::Result {
    check_boundary(ndr.boundary)?;
    check_field(ndr.from)?;
    check_field(ndr.to)?;
    check_field(ndr.reporting_mta)?;
    if ndr.reporting_mta.chars().any(char::is_whitespace) {
        return Err(fmt::Error);
    }
    check_field(ndr.message_id)?;
    let id = ndr.message_id;
    if !id.is_ascii()
        || !id.contains('@')
        || id.bytes().any(|c| c == b'<' || c == b'>' || c == b' ')
    {
        return Err(fmt::Error);
    }
    for rcpt in ndr.recipients {
        check_field(rcpt)?;
    }
    if let Some(headers) = ndr.original_headers {
        for line in header_lines(headers) {
            if line
                .strip_prefix("--")
                .is_some_and(|rest| rest.starts_with(ndr.boundary))
            {
                return Err(fmt::Error);
            }
        }
    }
    Ok(())
}

/// A header-ish value: non-empty, bounded, and free of control characters (CR, LF, NUL,
/// TAB, DEL, C1) and Unicode line or paragraph separators.
fn check_field(s: &str) -> fmt::Result {
    if s.is_empty()
        || s.len() > MAX_FIELD
        || s.chars()
            .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        Err(fmt::Error)
    } else {
        Ok(())
    }
}

/// RFC 2046: `boundary := 0*69<bchars> bcharsnospace`, 1 to 70 characters.
fn check_boundary(b: &str) -> fmt::Result {
    let ok = !b.is_empty()
        && b.len() <= 70
        && !b.ends_with(' ')
        && b.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'\''
                        | b'('
                        | b')'
                        | b'+'
                        | b'_'
                        | b','
                        | b'-'
                        | b'.'
                        | b'/'
                        | b':'
                        | b'='
                        | b'?'
                        | b' '
                )
        });
    if ok {
        Ok(())
    } else {
        Err(fmt::Error)
    }
}

/// The lines of a header section, without line endings, up to the first empty line.
fn header_lines(headers: &str) -> impl Iterator<Item = &str> {
    headers
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

/// Bytes of text per RFC 2047 encoded word: 56 base64 characters, 68 with the markers,
/// so `Subject: ` plus the first word stays within 78 characters.
const CHUNK: usize = 42;

/// Writes `Subject: <title>\r\n`, as RFC 2047 `B` encoded words if it is not ASCII.
fn write_subject<W: Write>(out: &mut W, title: &str) -> fmt::Result {
    out.write_str("Subject:")?;
    if title.is_ascii() {
        return write!(out, " {title}\r\n");
    }
    // Each encoded word holds only whole UTF-8 characters (RFC 2047 section 5), one
    // word per folded line.
    let mut start = 0;
    let mut end = 0;
    for (i, c) in title.char_indices() {
        let next = i.saturating_add(c.len_utf8());
        if next.saturating_sub(start) > CHUNK {
            write_encoded_word(out, title.get(start..end).ok_or(fmt::Error)?, start == 0)?;
            start = end;
        }
        end = next;
    }
    if end > start {
        write_encoded_word(out, title.get(start..end).ok_or(fmt::Error)?, start == 0)?;
    }
    out.write_str("\r\n")
}

fn write_encoded_word<W: Write>(out: &mut W, text: &str, first: bool) -> fmt::Result {
    out.write_str(if first { " " } else { "\r\n " })?;
    out.write_str("=?UTF-8?B?")?;
    write_base64(out, text.as_bytes())?;
    out.write_str("?=")
}

/// Standard base64 (RFC 4648) with padding.
fn write_base64<W: Write>(out: &mut W, data: &[u8]) -> fmt::Result {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u8| -> char {
        ALPHABET
            .get(usize::from(v & 0x3f))
            .map_or('=', |&b| char::from(b))
    };
    for chunk in data.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        out.write_char(sym(b0 >> 2))?;
        out.write_char(sym((b0 << 4) | (b1 >> 4)))?;
        out.write_char(if chunk.len() > 1 {
            sym((b1 << 2) | (b2 >> 6))
        } else {
            '='
        })?;
        out.write_char(if chunk.len() > 2 { sym(b2) } else { '=' })?;
    }
    Ok(())
}

/// Writes `text` word-wrapped at [`WRAP`] characters, each line ending in CRLF.
fn write_wrapped<W: Write>(out: &mut W, text: &str) -> fmt::Result {
    let mut col = 0usize;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if col > 0 && col.saturating_add(1).saturating_add(len) > WRAP {
            out.write_str("\r\n")?;
            col = 0;
        }
        if col > 0 {
            out.write_char(' ')?;
            col = col.saturating_add(1);
        }
        out.write_str(word)?;
        col = col.saturating_add(len);
    }
    out.write_str("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapless::String;

    fn date(unix: u64) -> String<64> {
        let mut s = String::new();
        write_rfc5322_date(&mut s, unix).unwrap();
        s
    }

    const RCPTS: [&str; 2] = ["alice@example.org", "bob@example.com"];

    fn sample(reason: Reason, lang: Lang) -> Ndr<'static> {
        Ndr {
            reporting_mta: "mx.example.net",
            from: "MAILER-DAEMON@mx.example.net",
            to: "sender@contoso.com",
            recipients: &RCPTS,
            reason,
            lang,
            arrival: 1_790_000_000,
            now: 1_790_000_060,
            boundary: "=_outguard_0123456789",
            message_id: "1790000060.abc@mx.example.net",
            original_headers: None,
        }
    }

    fn render_ok(ndr: &Ndr<'_>) -> String<8192> {
        let mut s = String::new();
        render(ndr, &mut s).unwrap();
        s
    }

    /// Every LF is preceded by CR, every CR followed by LF, no line over 998 octets.
    fn assert_crlf(s: &str) {
        let b = s.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c == b'\n' {
                assert!(i > 0 && b[i - 1] == b'\r', "bare LF at {i}");
            }
            if c == b'\r' {
                assert_eq!(b.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
        }
        assert!(s.ends_with("\r\n"));
        for line in s.split("\r\n") {
            assert!(line.len() <= 998);
        }
    }

    fn b64_decode(s: &str, out: &mut heapless::Vec<u8, 256>) {
        let val = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                _ => panic!("bad base64 {c}"),
            }
        };
        for q in s.as_bytes().chunks(4) {
            let pad = q.iter().filter(|&&c| c == b'=').count();
            let mut n = 0u32;
            for &c in q {
                n = (n << 6) | if c == b'=' { 0 } else { val(c) };
            }
            let bytes = n.to_be_bytes();
            for &x in &bytes[1..4 - pad] {
                out.push(x).unwrap();
            }
        }
    }

    #[test]
    fn known_dates() {
        // Expected values from Python's email.utils.formatdate (with +0000).
        assert_eq!(date(0).as_str(), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            date(1_790_000_000).as_str(),
            "Mon, 21 Sep 2026 14:13:20 +0000"
        );
        assert_eq!(
            date(951_782_400).as_str(),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(
            date(1_709_210_096).as_str(),
            "Thu, 29 Feb 2024 12:34:56 +0000"
        );
        assert_eq!(
            date(4_107_542_400).as_str(),
            "Mon, 01 Mar 2100 00:00:00 +0000"
        );
        assert_eq!(
            date(253_402_300_799).as_str(),
            "Fri, 31 Dec 9999 23:59:59 +0000"
        );
        // Beyond year 9999: clamped, no overflow (tests run with overflow checks).
        assert_eq!(
            date(253_402_300_800).as_str(),
            "Fri, 31 Dec 9999 23:59:59 +0000"
        );
        assert_eq!(date(u64::MAX).as_str(), "Fri, 31 Dec 9999 23:59:59 +0000");
    }

    #[test]
    fn dates_agree_with_a_day_counter() {
        // Walk every day from 1970 to 2400 and compare with a naive calendar.
        let (mut y, mut m, mut d, mut wd) = (1970u64, 1u64, 1u64, 4u64);
        let mut day = 0u64;
        while y < 2400 {
            let s = date(day * 86_400 + 86_399);
            let mut want: String<64> = String::new();
            write!(
                want,
                "{}, {:02} {} {:04} 23:59:59 +0000",
                weekday_name(wd),
                d,
                month_name(m),
                y
            )
            .unwrap();
            assert_eq!(s, want);
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
            wd = (wd + 1) % 7;
            day += 1;
        }
    }

    #[test]
    fn base64_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut s: String<16> = String::new();
            write_base64(&mut s, input.as_bytes()).unwrap();
            assert_eq!(s, want);
        }
    }

    #[test]
    fn structure_of_an_english_ndr() {
        let ndr = sample(Reason::UnregisteredDomain, Lang::En);
        let s = render_ok(&ndr);
        assert_crlf(&s);
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("From: MAILER-DAEMON@mx.example.net\r\nTo: sender@contoso.com\r\n")
        );
        assert!(head.contains("\r\nDate: Mon, 21 Sep 2026 14:14:20 +0000\r\n"));
        assert!(head.contains("\r\nMessage-ID: <1790000060.abc@mx.example.net>\r\n"));
        assert!(
            head.contains("\r\nSubject: Message not delivered: sending domain not registered\r\n")
        );
        assert!(head.contains("\r\nMIME-Version: 1.0\r\n"));
        assert!(head.contains("\r\nAuto-Submitted: auto-replied\r\n"));
        assert!(head.ends_with(
            "\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"=_outguard_0123456789\""
        ));

        let delim = "\r\n--=_outguard_0123456789\r\n";
        assert_eq!(body.matches(delim).count(), 2);
        assert!(body.ends_with("\r\n--=_outguard_0123456789--\r\n"));
        let mut parts = body.split(delim);
        let _preamble = parts.next().unwrap();
        let text = parts.next().unwrap();
        let dsn = parts.next().unwrap();
        assert!(parts.next().is_none());

        assert!(text.starts_with(
            "Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             Content-Language: en\r\n\r\n"
        ));
        assert!(text.contains("\r\n  alice@example.org\r\n  bob@example.com\r\n"));
        assert!(text.contains(
            "\r\n  550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains\r\n"
        ));
        assert!(text.contains("Why did I get this?\r\nYour message was rejected with 5.7.750"));
        assert!(text.contains("What can the administrator do?\r\nTo resolve 5.7.750,"));
        for line in text.split("\r\n") {
            assert!(line.chars().count() <= 100, "{line}");
        }

        let dsn_want = "Content-Type: message/delivery-status\r\n\r\n\
            Reporting-MTA: dns; mx.example.net\r\n\
            Arrival-Date: Mon, 21 Sep 2026 14:13:20 +0000\r\n\r\n\
            Final-Recipient: rfc822; alice@example.org\r\n\
            Action: failed\r\n\
            Status: 5.7.750\r\n\
            Diagnostic-Code: smtp; 550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains\r\n\r\n\
            Final-Recipient: rfc822; bob@example.com\r\n\
            Action: failed\r\n\
            Status: 5.7.750\r\n\
            Diagnostic-Code: smtp; 550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains\r\n\
            \r\n--=_outguard_0123456789--\r\n";
        assert_eq!(dsn, dsn_want);
    }

    #[test]
    fn every_reason_and_language_renders() {
        for reason in Reason::ALL {
            for lang in Lang::ALL {
                let mut ndr = sample(reason, lang);
                ndr.original_headers = Some("Subject: hi\nFrom: a@b\n\nbody\n");
                let s = render_ok(&ndr);
                assert_crlf(&s);
                let status: String<32> = {
                    let mut st = String::new();
                    write!(st, "\r\nStatus: {}\r\n", reason.enhanced_code()).unwrap();
                    st
                };
                assert_eq!(s.matches(status.as_str()).count(), 2);
                let mut diag: String<160> = String::new();
                write!(diag, "\r\nDiagnostic-Code: smtp; {}\r\n", reason.reply()).unwrap();
                assert_eq!(s.matches(diag.as_str()).count(), 2);
                let mut cl: String<40> = String::new();
                write!(cl, "\r\nContent-Language: {}\r\n", lang.tag()).unwrap();
                assert!(s.contains(cl.as_str()));
                assert!(s.contains(
                    explain::explain(reason, lang, Audience::Sender)
                        .split(' ')
                        .next()
                        .unwrap()
                ));
                assert!(s.contains(
                    "\r\n--=_outguard_0123456789\r\nContent-Type: text/rfc822-headers\r\n\r\n\
                     Subject: hi\r\nFrom: a@b\r\n\r\n--=_outguard_0123456789--\r\n"
                ));
                assert!(!s.contains("body"));
                if lang == Lang::En {
                    assert!(!s.contains("=?UTF-8?B?"));
                } else {
                    assert!(s.contains("\r\nSubject: =?UTF-8?B?"));
                }
            }
        }
    }

    #[test]
    fn ukrainian_subject_is_rfc2047() {
        let ndr = sample(Reason::UnregisteredDomain, Lang::Uk);
        let s = render_ok(&ndr);
        assert_crlf(&s);
        let start = s.find("\r\nSubject: ").unwrap() + 2;
        let rest = &s[start..];
        let end = rest.find("\r\nMIME-Version:").unwrap();
        let field = &rest[..end];
        assert!(field.is_ascii());
        // Expected words computed with Python's base64 over the same 42-byte chunks.
        assert_eq!(
            field,
            "Subject: =?UTF-8?B?0JvQuNGB0YIg0L3QtSDQtNC+0YHRgtCw0LLQu9C10L3Qvjog0LTQvtC8?=\r\n \
             =?UTF-8?B?0LXQvSDQstGW0LTQv9GA0LDQstC90LjQutCwINC90LUg0LfQsNGA0LU=?=\r\n \
             =?UTF-8?B?0ZTRgdGC0YDQvtCy0LDQvdC+?="
        );
        let mut decoded: heapless::Vec<u8, 256> = heapless::Vec::new();
        for (i, line) in field.split("\r\n").enumerate() {
            assert!(line.len() <= 78, "{line}");
            let word = if i == 0 {
                line.strip_prefix("Subject: ").unwrap()
            } else {
                line.strip_prefix(' ').unwrap()
            };
            let b64 = word
                .strip_prefix("=?UTF-8?B?")
                .and_then(|w| w.strip_suffix("?="))
                .unwrap();
            let before = decoded.len();
            b64_decode(b64, &mut decoded);
            // Every encoded word holds whole characters.
            assert!(core::str::from_utf8(&decoded[before..]).is_ok());
        }
        assert_eq!(
            core::str::from_utf8(&decoded).unwrap(),
            explain::title(Reason::UnregisteredDomain, Lang::Uk)
        );
    }

    #[test]
    fn injection_and_bad_inputs_are_rejected_without_output() {
        let base = sample(Reason::TenantThreshold, Lang::Pl);
        let bad_rcpts: [&str; 2] = ["ok@example.org", "evil@example.org\r\nBcc: x@y"];
        let mut cases: heapless::Vec<Ndr<'_>, 32> = heapless::Vec::new();
        {
            let mut push = |f: &dyn Fn(&mut Ndr<'static>)| {
                let mut n = base;
                f(&mut n);
                cases.push(n).unwrap();
            };
            push(&|n| n.to = "victim@example.org\r\nBcc: everyone@example.org");
            push(&|n| n.to = "victim@example.org\nX: y");
            push(&|n| n.to = "");
            push(&|n| n.from = "MAILER-DAEMON@mx\rX: y");
            push(&|n| n.from = "a\0b@example.org");
            push(&|n| n.reporting_mta = "mx.example.net\r\nX: y");
            push(&|n| n.reporting_mta = "mx example.net");
            push(&|n| n.message_id = "abc@mx\r\nX: y");
            push(&|n| n.message_id = "<abc@mx>");
            push(&|n| n.message_id = "abc");
            push(&|n| n.boundary = "");
            push(&|n| n.boundary = "a\r\nb");
            push(&|n| n.boundary = "semi;colon");
            push(&|n| n.boundary = "quote\"");
            push(&|n| n.boundary = "trailing ");
            push(&|n| {
                n.boundary =
                    "0123456789012345678901234567890123456789012345678901234567890123456789x";
            });
            push(&|n| n.original_headers = Some("X: a\r\n--=_outguard_0123456789--\r\n"));
        }
        cases
            .push(Ndr {
                recipients: &bad_rcpts,
                ..base
            })
            .unwrap();
        cases
            .push(Ndr {
                recipients: &[""],
                ..base
            })
            .unwrap();
        for (i, n) in cases.iter().enumerate() {
            let mut s: String<8192> = String::new();
            assert_eq!(render(n, &mut s), Err(fmt::Error), "case {i}");
            assert!(s.is_empty(), "case {i} wrote output");
        }
        // A 70-character boundary with every special bchar is fine.
        let long = "'()+_,-./:=? 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU";
        assert_eq!(long.len(), 70);
        let n = Ndr {
            boundary: long,
            ..base
        };
        let s = render_ok(&n);
        assert_crlf(&s);
        // Lone CRs and bare LFs in the original headers are normalized.
        let n = Ndr {
            original_headers: Some("A: 1\rx\nB: 2\r\n"),
            ..base
        };
        let s = render_ok(&n);
        assert_crlf(&s);
        assert!(s.contains("\r\n\r\nA: 1 x\r\nB: 2\r\n\r\n--"));
    }

    #[test]
    fn no_recipients_renders_no_recipient_block() {
        let n = Ndr {
            recipients: &[],
            ..sample(Reason::LowReputationIp, Lang::PtBr)
        };
        let s = render_ok(&n);
        assert_crlf(&s);
        assert!(!s.contains("Final-Recipient:"));
        assert!(!s.contains("Destinatários que não receberam"));
        assert!(s.contains(
            "Arrival-Date: Mon, 21 Sep 2026 14:13:20 +0000\r\n\r\n--=_outguard_0123456789--\r\n"
        ));
    }

    #[test]
    fn small_buffers_give_err_not_panic() {
        let n = sample(Reason::Unattributed, Lang::Uk);
        let full = render_ok(&n);
        let mut s: String<64> = String::new();
        assert_eq!(render(&n, &mut s), Err(fmt::Error));
        let mut s: String<1024> = String::new();
        assert_eq!(render(&n, &mut s), Err(fmt::Error));
        let mut s: String<0> = String::new();
        assert_eq!(render(&n, &mut s), Err(fmt::Error));
        assert!(full.len() > 1024);
        let mut s: String<16> = String::new();
        assert_eq!(write_rfc5322_date(&mut s, 0), Err(fmt::Error));
    }
}
