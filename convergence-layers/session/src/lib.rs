//! # ferry-cl-session
//!
//! The sans-IO session layer Ferry runs on small-MTU links: serial cables, LoRa radios
//! and, later, Bluetooth LE. It reads no clock and does no I/O: the driver feeds it
//! received frames and the time, and drains the frames it wants transmitted, in
//! quinn-proto's vocabulary (`handle_frame`, `handle_timeout`, `poll_transmit`,
//! `poll_event`, `poll_timeout`).
//!
//! - [`kiss`]: KISS framing on byte streams (cables, KISS TNCs, RNode radios).
//! - [`frame`]: the compact frame format (a 50-byte message to a neighbour: one
//!   198-byte frame), with a 4-byte keyed check that refuses corrupt frames and those
//!   of other realms.
//! - [`session`]: neighbours proven by signed hellos, segmentation and reassembly,
//!   selective acknowledgments, retransmission tuned to the measured round trip,
//!   resume after a break, priority classes with interleaving, one transmission for
//!   several neighbours, bounded memory.
//!
//! ```
//! use ferry_cl_session::{Class, Config, Event, Kind, Medium, Session};
//! use ferry_core::{Identity, Realm};
//!
//! struct Cable;
//! impl Medium for Cable {
//!     fn airtime_us(&self, len: usize) -> u64 { len as u64 * 87 } // 115200 baud
//! }
//! let realm = Realm::new("valley", [7; 32]).unwrap();
//! let (ia, ib) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
//! let mut a = Session::new(&ia, &realm, [1; 4], Config::cable(115_200), Cable, 0);
//! let mut b = Session::new(&ib, &realm, [2; 4], Config::cable(115_200), Cable, 0);
//! // Both say hello; each frame one side transmits, the other receives.
//! let mut now = 0;
//! let mut got = None;
//! for _ in 0..200 {
//!     while let Some(f) = a.poll_transmit(now) { b.handle_frame(now, &f); }
//!     while let Some(f) = b.poll_transmit(now) { a.handle_frame(now, &f); }
//!     while let Some(e) = a.poll_event() {
//!         if let Event::NeighborUp { peer } = e {
//!             a.send(&peer, Kind::Bundle, Class::Normal, 1, vec![42; 10_000]).unwrap();
//!         }
//!     }
//!     while let Some(e) = b.poll_event() {
//!         if let Event::Received { bytes, .. } = e { got = Some(bytes); }
//!     }
//!     now += 10_000;
//!     a.handle_timeout(now);
//!     b.handle_timeout(now);
//! }
//! assert_eq!(got, Some(vec![42; 10_000]));
//! ```
#![forbid(unsafe_code)]

pub mod frame;
pub mod kiss;
pub mod session;

pub use frame::{FrameError, Kind};
pub use session::{
    frame_key, pair_key, short_of, Class, Config, Event, Medium, SendError, Session, Stats,
};
