#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The byte stream under a plain connection: a TCP or unix socket,
/// non-blocking on the event loop, blocking with `SO_RCVTIMEO`/`SO_SNDTIMEO`
/// under a synchronous caller. Every `recv(2)` and `send(2)` on a plain
/// connection goes through here; ``TLSTransport`` takes the same place with
/// `SSL_read`/`SSL_write` (see ``Transport``).
///
/// The descriptor belongs to the hiredis context that connected it (see
/// ``RedisConnection``); the transport only moves bytes over it.
struct SocketTransport: Sendable {
    /// The socket, for epoll.
    let descriptor: Int32

    /// Reads what the socket holds, up to `buffer.count` bytes (a blocking
    /// socket waits for some, up to its timeout: then ``TransportProgress/wouldBlock``).
    func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportProgress {
        while true {
            let count = recv(descriptor, buffer.baseAddress, buffer.count, 0)
            if count > 0 { return .moved(count) }
            if count == 0 { return .endOfStream }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let error: return .failed(error)
            }
        }
    }

    /// Writes as much of `bytes` as the socket takes now (a blocking socket
    /// waits for room, up to its timeout), without raising `SIGPIPE` on a
    /// closed peer.
    func write(_ bytes: UnsafeRawBufferPointer) -> TransportProgress {
        while true {
            let count = send(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if count > 0 { return .moved(count) }
            if count == 0 { return .wouldBlock }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let error: return .failed(error)
            }
        }
    }
}
