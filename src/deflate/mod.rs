//! permessage-deflate (RFC 7692): negotiation in the upgrade, the shared
//! deflated copy of a broadcast, and inflating what compressing clients send.
//! The server keeps no compressor per connection: each broadcast is deflated
//! once (alone, and chained after its channel's previous message for clients
//! that keep their window), and each inbound message is inflated on its own.

pub mod codec;
pub mod inbound;
pub mod negotiate;

pub use negotiate::{Agreed, negotiate};

/// The deflate window a client lets the server use, by class: each class has one
/// shared deflated copy of a broadcast, valid for every window in the class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// 15 bits (32 KiB), the default.
    Full,
    /// 12-14 bits. Run-length matches only, as `Rle`: miniz_oxide cannot bound its
    /// matches to 4 KiB (codec.rs says why), so the class keeps the bytes apart
    /// only for the day it can.
    Short,
    /// 8-11 bits: run-length matches only (distance 1).
    Rle,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Full, Window::Short, Window::Rle];

    pub fn for_bits(bits: u8) -> Window {
        match bits {
            15.. => Window::Full,
            12..=14 => Window::Short,
            _ => Window::Rle,
        }
    }

    /// The window whose deflated bytes serve this one: today `Short` compresses
    /// exactly as `Rle`, so both share `Rle`'s copy (and compressor) instead of
    /// deflating every broadcast twice.
    pub fn class(self) -> Window {
        match self {
            Window::Short => Window::Rle,
            w => w,
        }
    }
}
