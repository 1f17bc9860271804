//! The datagrams edge processes exchange over their handoff socket pairs: a QUIC packet
//! forwarded to the process that owns its connection, or a successor's hello.
//!
//! One Unix datagram per message, so no framing: a 4-byte tag, then the fields. Only
//! processes of this host on a socket pair they inherited from each other read these,
//! but the decoder still checks every length (a newer binary could change the format).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio_quiche::quic::Incoming;

/// "Edge QUIC packet", format 1.
const PACKET_TAG: &[u8; 4] = b"EQP1";
/// "Edge QUIC hello", format 1: a successor announces itself and its generation.
const HELLO_TAG: &[u8; 4] = b"EQH1";
/// Family byte + 16 address bytes + port.
const ADDR_LEN: usize = 1 + 16 + 2;

/// One message between edge processes.
#[derive(Debug)]
pub enum Message {
    /// A packet read by one process for a connection another one serves.
    Packet {
        /// The listener (its configured address) that read it; the receiver hands it to
        /// its own listener of that address.
        listener: SocketAddr,
        incoming: Incoming,
    },
    /// A newer process started from this one's sockets.
    Hello { generation: u8 },
}

pub fn encode_packet(listener: SocketAddr, incoming: &Incoming, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(PACKET_TAG);
    put_addr(out, listener);
    put_addr(out, incoming.peer_addr);
    put_addr(out, incoming.local_addr);
    // A GRO buffer holds several datagrams of `gro` bytes each; 0 = one datagram.
    let gro = incoming
        .gro
        .and_then(|g| u16::try_from(g).ok())
        .unwrap_or(0);
    out.extend_from_slice(&gro.to_be_bytes());
    out.extend_from_slice(&incoming.buf);
}

pub fn encode_hello(generation: u8) -> [u8; 5] {
    let mut out = [0u8; 5];
    out[..4].copy_from_slice(HELLO_TAG);
    out[4] = generation;
    out
}

/// `None` for anything that is not a well-formed message (ignored by the reader).
pub fn decode(datagram: &[u8]) -> Option<Message> {
    let (tag, rest) = datagram.split_first_chunk::<4>()?;
    if tag == HELLO_TAG {
        let [generation] = rest else { return None };
        return Some(Message::Hello {
            generation: *generation,
        });
    }
    if tag != PACKET_TAG {
        return None;
    }
    let (listener, rest) = take_addr(rest)?;
    let (peer_addr, rest) = take_addr(rest)?;
    let (local_addr, rest) = take_addr(rest)?;
    let (gro, buf) = rest.split_first_chunk::<2>()?;
    let gro = u16::from_be_bytes(*gro);
    Some(Message::Packet {
        listener,
        incoming: Incoming {
            peer_addr,
            local_addr,
            rx_time: None,
            buf: buf.to_vec(),
            gro: (gro != 0).then_some(i32::from(gro)),
            so_mark_data: None,
        },
    })
}

fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.to_ipv6_mapped().octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn take_addr(bytes: &[u8]) -> Option<(SocketAddr, &[u8])> {
    if bytes.len() < ADDR_LEN {
        return None;
    }
    let (addr, rest) = bytes.split_at(ADDR_LEN);
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&addr[1..17]);
    let v6 = Ipv6Addr::from(octets);
    let ip = match addr[0] {
        4 => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)),
        6 => IpAddr::V6(v6),
        _ => return None,
    };
    let port = u16::from_be_bytes([addr[17], addr[18]]);
    Some((SocketAddr::new(ip, port), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(buf: &[u8], gro: Option<i32>) -> Incoming {
        Incoming {
            peer_addr: "[::1]:50123".parse().expect("address"),
            local_addr: "127.0.0.1:8443".parse().expect("address"),
            rx_time: None,
            buf: buf.to_vec(),
            gro,
            so_mark_data: None,
        }
    }

    #[test]
    fn a_packet_survives_the_trip_with_its_addresses_and_gro_size() {
        let listener: SocketAddr = "0.0.0.0:443".parse().expect("address");
        let mut wire = Vec::new();
        encode_packet(listener, &incoming(b"\x40quic", Some(1200)), &mut wire);
        let Some(Message::Packet {
            listener: l,
            incoming: i,
        }) = decode(&wire)
        else {
            panic!("not decoded");
        };
        assert_eq!(l, listener);
        assert_eq!(i.peer_addr, "[::1]:50123".parse().expect("address"));
        assert_eq!(i.local_addr, "127.0.0.1:8443".parse().expect("address"));
        assert_eq!(i.buf, b"\x40quic");
        assert_eq!(i.gro, Some(1200));

        encode_packet(listener, &incoming(b"x", None), &mut wire);
        let Some(Message::Packet { incoming: i, .. }) = decode(&wire) else {
            panic!("not decoded");
        };
        assert_eq!(i.gro, None);
    }

    #[test]
    fn hellos_decode_and_garbage_does_not() {
        assert!(matches!(
            decode(&encode_hello(7)),
            Some(Message::Hello { generation: 7 })
        ));
        let mut wire = Vec::new();
        encode_packet(
            "127.0.0.1:1".parse().expect("address"),
            &incoming(b"", None),
            &mut wire,
        );
        for cut in 0..wire.len() {
            assert!(
                decode(&wire[..cut]).is_none(),
                "a {cut}-byte prefix decoded"
            );
        }
        assert!(decode(b"EQH1").is_none());
        assert!(decode(b"XXXX12345").is_none());
    }
}
