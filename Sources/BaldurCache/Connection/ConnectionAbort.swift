#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Lets another thread end what a ``RedisConnection`` is blocked on: its
/// connect, TLS handshake and `AUTH`, or a call in flight. A pool hands one
/// to each connection it opens and aborts them all when the server must not
/// be waited on any more (a master a failover demoted).
///
/// An abort shuts the socket down both ways (`shutdown(2)`): a blocked read
/// or write returns at once, and the connection reports ``reason`` in place
/// of the socket's error. The descriptor is only known between the connect
/// and the connection's close, under the lock, so an abort never reaches a
/// descriptor the process reused for another socket. An abort that comes
/// before the connect finished takes effect as soon as it does.
final class ConnectionAbort: Sendable {
    private struct State: Sendable {
        /// The connected socket; -1 before the connect and after the close.
        var descriptor: Int32 = -1
        var reason: String?
    }

    private let state = PlainMutex(State())

    /// Why the connection was aborted, in words: `nil` while it was not.
    var reason: String? { state.withLock { $0.reason } }

    /// Ends what the connection is doing now and anything it does later.
    ///
    /// - Parameter reason: Why, in words; the connection adds what it was doing.
    func abort(because reason: String) {
        state.withLock { state in
            guard state.reason == nil else { return }
            state.reason = reason
            if state.descriptor >= 0 { _ = shutdown(state.descriptor, Int32(SHUT_RDWR)) }
        }
    }

    /// Called by the connection once its socket is connected.
    ///
    /// - Returns: The reason when it was aborted already (the caller closes
    ///   the socket and fails); `nil` to go on.
    func attach(_ descriptor: Int32) -> String? {
        state.withLock { state in
            if let reason = state.reason { return reason }
            state.descriptor = descriptor
            return nil
        }
    }

    /// Called by the connection before it closes its socket.
    func detach() {
        state.withLock { $0.descriptor = -1 }
    }

    /// The error of a call in flight on a connection aborted for `reason`:
    /// sent, perhaps run. `detail` is what the socket said, if anything.
    static func callError(at address: RedisServerAddress, _ reason: String, detail: String? = nil) -> RedisError {
        RedisError(.connectionClosed, "the connection to \(address) was cut: \(reason); a call in flight there may or may not have run" + (detail.map { " [\($0)]" } ?? ""))
    }

    /// The error of a connect aborted for `reason`: nothing was sent, so
    /// the command may go elsewhere.
    static func connectError(to address: RedisServerAddress, _ reason: String) -> RedisError {
        RedisError(.closed, "the connection to \(address) was given up while it was made: \(reason); nothing was sent")
    }
}
