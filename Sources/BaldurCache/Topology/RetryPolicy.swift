/// When a call that failed is sent again, decided once for both APIs and
/// every topology. (A cluster's redirects are ``ClusterRoute``'s.)
///
/// - A request that never left (`closed`: a failover retired its pool
///   before it was written) goes once more, to the server the router
///   serves now, whatever the command: it did not run.
/// - A request whose reply was lost (``RedisError/isLostReply``: a timeout
///   or a dropped connection) may have run. It goes once more, on a fresh
///   connection, only when ``RedisConfiguration/Retry/onTimeout`` allows
///   and the call is read-only (running it twice changes nothing).
/// - Anything else, and any second failure, is the answer.
struct RetryPolicy: Sendable, Equatable {
    /// ``RedisConfiguration/Retry/onTimeout``.
    let retryOnTimeout: Bool

    enum Decision: Sendable, Equatable {
        /// Send it again to the server the router serves now, if that is
        /// another than the one that refused it; else fail.
        case resendOnNewServer
        /// Send it again on a fresh connection.
        case resendOnFreshConnection
        /// The error is the answer.
        case fail
    }

    /// `error` ended attempt `attempt` (1 for the first) of a call.
    /// `readOnly` is asked only when it decides, so the happy path and
    /// most failures never look the command names up.
    func decide(after error: RedisError, attempt: Int, readOnly: () -> Bool) -> Decision {
        guard attempt == 1 else { return .fail }
        if error.code == .closed { return .resendOnNewServer }
        guard retryOnTimeout, error.isLostReply, readOnly() else { return .fail }
        return .resendOnFreshConnection
    }
}

extension RedisError {
    /// The request was written but its reply never came: a read or write
    /// timeout, a connection the server dropped, or an I/O error. The
    /// command may or may not have run.
    var isLostReply: Bool {
        code == .readTimeout || code == .writeTimeout || code == .connectionClosed || code == .io
    }
}
