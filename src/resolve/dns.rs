//! DNS packets (RFC 1035 section 4): one question out, the A/AAAA records of
//! the answer section back. Only what a stub resolver asking for addresses needs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 2.3.4), length octets included.
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// Compression pointers followed while reading one name before giving up (a loop).
const MAX_POINTERS: usize = 32;
const CLASS_IN: u16 = 1;
const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_TRUNCATED: u16 = 0x0200;
const FLAG_RECURSION_DESIRED: u16 = 0x0100;
pub const RCODE_NXDOMAIN: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    A = 1,
    Aaaa = 28,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The name cannot be asked: an empty or over-long label, or over 255 bytes.
    BadName(String),
    /// The packet ends inside a field.
    Short,
    /// A compression pointer outside the packet, or a pointer loop.
    BadPointer,
    /// Not the answer to our question (id, response flag or question differ).
    NotOurs,
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::BadName(name) => write!(f, "{name:?} is not a valid DNS name"),
            DnsError::Short => f.write_str("DNS answer ends early"),
            DnsError::BadPointer => f.write_str("DNS answer has a bad name pointer"),
            DnsError::NotOurs => f.write_str("DNS answer is not for our question"),
        }
    }
}

impl std::error::Error for DnsError {}

/// What a nameserver said: its response code and the addresses it gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub rcode: u8,
    pub truncated: bool,
    pub addrs: Vec<IpAddr>,
}

/// A recursive query for `name` (no trailing dot needed).
pub fn build_query(id: u16, name: &str, qtype: QType) -> Result<Vec<u8>, DnsError> {
    let mut packet = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    for field in [id, FLAG_RECURSION_DESIRED, 1, 0, 0, 0] {
        packet.extend_from_slice(&field.to_be_bytes());
    }
    encode_name(&mut packet, name)?;
    packet.extend_from_slice(&(qtype as u16).to_be_bytes());
    packet.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(packet)
}

fn encode_name(out: &mut Vec<u8>, name: &str) -> Result<(), DnsError> {
    let bad = || DnsError::BadName(name.to_string());
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() + 2 > MAX_NAME {
        return Err(bad());
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err(bad());
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// The addresses in the answer to query `id` for `name`/`qtype`. Records of
/// other types (a CNAME chain's names) are skipped; the addresses they lead to
/// come in the same answer section.
pub fn parse_answer(packet: &[u8], id: u16, name: &str, qtype: QType) -> Result<Answer, DnsError> {
    let mut r = Reader { packet, pos: 0 };
    let (got_id, flags) = (r.u16()?, r.u16()?);
    let (qdcount, ancount) = (r.u16()?, r.u16()?);
    r.skip(4)?; // authority and additional counts
    if got_id != id || flags & FLAG_RESPONSE == 0 || qdcount != 1 {
        return Err(DnsError::NotOurs);
    }
    let qname = r.name()?;
    let (qt, qc) = (r.u16()?, r.u16()?);
    let wanted = name.strip_suffix('.').unwrap_or(name);
    if !qname.eq_ignore_ascii_case(wanted) || qt != qtype as u16 || qc != CLASS_IN {
        return Err(DnsError::NotOurs);
    }
    let mut addrs = Vec::new();
    for _ in 0..ancount {
        r.name()?;
        let (rtype, class) = (r.u16()?, r.u16()?);
        r.skip(4)?; // TTL: we resolve once per connect and keep nothing
        let len = r.u16()? as usize;
        let data = r.take(len)?;
        if class != CLASS_IN || rtype != qtype as u16 {
            continue;
        }
        match (qtype, data.len()) {
            (QType::A, 4) => addrs.push(IpAddr::V4(Ipv4Addr::new(
                data[0], data[1], data[2], data[3],
            ))),
            (QType::Aaaa, 16) => {
                let octets: [u8; 16] = data.try_into().expect("length checked");
                addrs.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            _ => {}
        }
    }
    Ok(Answer {
        rcode: (flags & 0x000f) as u8,
        truncated: flags & FLAG_TRUNCATED != 0,
        addrs,
    })
}

struct Reader<'a> {
    packet: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).ok_or(DnsError::Short)?;
        let bytes = self.packet.get(self.pos..end).ok_or(DnsError::Short)?;
        self.pos = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), DnsError> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a possibly compressed name and leaves `pos` after it.
    fn name(&mut self) -> Result<String, DnsError> {
        let mut name = String::new();
        let mut at = self.pos;
        let mut resume = None;
        let mut pointers = 0;
        loop {
            let len = *self.packet.get(at).ok_or(DnsError::Short)? as usize;
            match len {
                0 => {
                    self.pos = resume.unwrap_or(at + 1);
                    return Ok(name);
                }
                l if l & 0xc0 == 0xc0 => {
                    let low = *self.packet.get(at + 1).ok_or(DnsError::Short)? as usize;
                    pointers += 1;
                    let target = ((l & 0x3f) << 8) | low;
                    if pointers > MAX_POINTERS || target >= self.packet.len() {
                        return Err(DnsError::BadPointer);
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                l if l <= MAX_LABEL => {
                    let label = self.packet.get(at + 1..at + 1 + l).ok_or(DnsError::Short)?;
                    if !name.is_empty() {
                        name.push('.');
                    }
                    name.push_str(&String::from_utf8_lossy(label));
                    if name.len() > MAX_NAME {
                        return Err(DnsError::BadPointer);
                    }
                    at += 1 + l;
                }
                _ => return Err(DnsError::BadPointer),
            }
        }
    }
}

/// Test helpers shared with the resolver's UDP tests: a nameserver's side.
#[cfg(test)]
pub mod fake {
    use super::*;

    /// The id, name and type of a query built by `build_query`.
    pub fn read_query(packet: &[u8]) -> (u16, String, u16) {
        let mut r = Reader { packet, pos: 0 };
        let id = r.u16().unwrap();
        r.skip(10).unwrap();
        let name = r.name().unwrap();
        (id, name, r.u16().unwrap())
    }

    /// An answer to `query` with `addrs` (those of the asked type), through a
    /// CNAME to exercise name compression.
    pub fn answer(query: &[u8], rcode: u8, addrs: &[IpAddr]) -> Vec<u8> {
        let (id, _, qtype) = read_query(query);
        let question = &query[HEADER_LEN..];
        let records: Vec<&IpAddr> = addrs
            .iter()
            .filter(|a| (qtype == QType::A as u16) == a.is_ipv4())
            .collect();
        let mut p = Vec::new();
        let flags = FLAG_RESPONSE | FLAG_RECURSION_DESIRED | 0x0080 | rcode as u16;
        let ancount = if records.is_empty() {
            0
        } else {
            records.len() + 1
        };
        for field in [id, flags, 1, ancount as u16, 0, 0] {
            p.extend_from_slice(&field.to_be_bytes());
        }
        p.extend_from_slice(question);
        if records.is_empty() {
            return p;
        }
        // <qname> CNAME edge.<qname>, then the addresses of edge.<qname>.
        p.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
        p.extend_from_slice(&[0, 5, 0, 1, 0, 0, 0, 60, 0, 7, 4]);
        let edge = p.len() - 1;
        p.extend_from_slice(b"edge\xc0\x0c");
        for addr in records {
            p.extend_from_slice(&[0xc0, edge as u8]);
            p.extend_from_slice(&qtype.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            match addr {
                IpAddr::V4(a) => {
                    p.extend_from_slice(&[0, 4]);
                    p.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    p.extend_from_slice(&[0, 16]);
                    p.extend_from_slice(&a.octets());
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bytes() {
        let q = build_query(0x1234, "nats.svc.", QType::A).unwrap();
        let expected = [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header: RD, one question
            4, b'n', b'a', b't', b's', 3, b's', b'v', b'c', 0, // name
            0, 1, 0, 1, // A, IN
        ];
        assert_eq!(q, expected);
        let q6 = build_query(1, "x", QType::Aaaa).unwrap();
        assert_eq!(&q6[q6.len() - 4..], &[0, 28, 0, 1]);
    }

    #[test]
    fn query_refuses_bad_names() {
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join(".");
        for name in ["", ".", "a..b", ".a", &long_label, &long_name] {
            assert_eq!(
                build_query(1, name, QType::A),
                Err(DnsError::BadName(name.to_string())),
                "{name:?}"
            );
        }
        assert!(build_query(1, &"a".repeat(63), QType::A).is_ok());
    }

    #[test]
    fn answer_through_cname_and_compression() {
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        let v6: IpAddr = "fd00::7".parse().unwrap();
        let q = build_query(77, "nats.internal", QType::A).unwrap();
        let a = parse_answer(
            &fake::answer(&q, 0, &[v4, v6]),
            77,
            "nats.internal",
            QType::A,
        );
        assert_eq!(
            a,
            Ok(Answer {
                rcode: 0,
                truncated: false,
                addrs: vec![v4]
            })
        );
        let q = build_query(78, "nats.internal", QType::Aaaa).unwrap();
        let a = parse_answer(
            &fake::answer(&q, 0, &[v4, v6]),
            78,
            "NATS.internal.",
            QType::Aaaa,
        );
        assert_eq!(a.unwrap().addrs, vec![v6]);
    }

    #[test]
    fn nxdomain_has_a_code_and_no_addresses() {
        let q = build_query(9, "missing.example", QType::A).unwrap();
        let a = parse_answer(
            &fake::answer(&q, RCODE_NXDOMAIN, &[]),
            9,
            "missing.example",
            QType::A,
        );
        assert_eq!(a.unwrap().rcode, RCODE_NXDOMAIN);
    }

    #[test]
    fn answers_to_other_questions_are_refused() {
        let q = build_query(5, "a.example", QType::A).unwrap();
        let answer = fake::answer(&q, 0, &["10.0.0.1".parse().unwrap()]);
        assert_eq!(
            parse_answer(&answer, 6, "a.example", QType::A),
            Err(DnsError::NotOurs)
        );
        assert_eq!(
            parse_answer(&answer, 5, "b.example", QType::A),
            Err(DnsError::NotOurs)
        );
        assert_eq!(
            parse_answer(&answer, 5, "a.example", QType::Aaaa),
            Err(DnsError::NotOurs)
        );
        // Our own query echoed back is not a response.
        assert_eq!(
            parse_answer(&q, 5, "a.example", QType::A),
            Err(DnsError::NotOurs)
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let q = build_query(5, "a.example", QType::A).unwrap();
        let answer = fake::answer(&q, 0, &["10.0.0.1".parse().unwrap()]);
        for cut in 0..answer.len() {
            assert!(
                parse_answer(&answer[..cut], 5, "a.example", QType::A).is_err(),
                "cut {cut}"
            );
        }
        // A pointer to itself in the answer's owner name.
        let mut looped = answer.clone();
        let owner = q.len(); // the first answer record's owner name
        looped[owner] = 0xc0;
        looped[owner + 1] = owner as u8;
        assert_eq!(
            parse_answer(&looped, 5, "a.example", QType::A),
            Err(DnsError::BadPointer)
        );
        // A pointer past the end.
        looped[owner + 1] = 0xff;
        assert_eq!(
            parse_answer(&looped, 5, "a.example", QType::A),
            Err(DnsError::BadPointer)
        );
    }

    #[test]
    fn truncated_flag_is_reported() {
        let q = build_query(5, "a.example", QType::A).unwrap();
        let mut answer = fake::answer(&q, 0, &["10.0.0.1".parse().unwrap()]);
        answer[2] |= 0x02;
        let a = parse_answer(&answer, 5, "a.example", QType::A).unwrap();
        assert!(a.truncated);
        assert_eq!(a.addrs.len(), 1);
    }
}
