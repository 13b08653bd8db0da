/// What one read or write on a transport did.
enum TransportProgress: Equatable {
    /// This many bytes moved (more than zero).
    case moved(Int)
    /// Nothing to read, or no room to write, now (on a blocking socket with
    /// a timeout: the timeout passed).
    case wouldBlock
    /// The peer closed the stream (read only).
    case endOfStream
    /// The system call failed with this `errno`.
    case failed(Int32)
    /// The TLS layer failed; the text says how, in words.
    case tlsFailed(String)
}

/// The byte stream under a connection: the plain socket or TLS over it.
/// Every read and write of every connection, blocking or on the event loop,
/// goes through here; hiredis' reader parses what comes out.
///
/// A struct holding an optional ``TLSTransport``, not an enum with a case
/// per transport: Swift keeps such an enum's case in the spare high bits of
/// the class reference, where valgrind does not see a pointer, so the leak
/// check reported every TLS connection still open at exit as lost.
struct Transport {
    /// The socket, for epoll.
    let descriptor: Int32
    /// TLS over the socket (`rediss://`), or `nil` for plain bytes.
    let tls: TLSTransport?

    /// `descriptor`'s bytes, through `tls` when given.
    init(descriptor: Int32, tls: TLSTransport? = nil) {
        self.descriptor = descriptor
        self.tls = tls
    }

    /// Reads what is there, up to `buffer.count` bytes: without blocking on
    /// the event loop; on a blocking socket, waiting up to its `SO_RCVTIMEO`.
    @inline(__always)
    func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportProgress {
        if let tls { return tls.read(into: buffer) }
        return SocketTransport(descriptor: descriptor).read(into: buffer)
    }

    /// Writes as much of `bytes` as the transport takes now.
    @inline(__always)
    func write(_ bytes: UnsafeRawBufferPointer) -> TransportProgress {
        if let tls { return tls.write(bytes) }
        return SocketTransport(descriptor: descriptor).write(bytes)
    }

    /// Writes all of `bytes` on a blocking socket.
    ///
    /// - Returns: `nil` when everything went out; otherwise what stopped it
    ///   (``TransportProgress/wouldBlock`` when `SO_SNDTIMEO` passed).
    func writeAll(_ bytes: UnsafeRawBufferPointer) -> TransportProgress? {
        var offset = 0
        while offset < bytes.count {
            switch write(UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
            case .moved(let count): offset += count
            case let stop: return stop
            }
        }
        return nil
    }

    /// `true` when the transport holds input the socket no longer shows
    /// (TLS records read but not yet handed out): epoll will not report it,
    /// so the reader must keep reading.
    var hasBufferedInput: Bool { tls?.hasBufferedInput ?? false }
}
