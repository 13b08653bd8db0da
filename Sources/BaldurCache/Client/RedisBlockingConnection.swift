/// A connection lent to one caller inside the blocking
/// `RedisClient.withConnection(routedBy:_:)`: for `MULTI`/`EXEC`, `WATCH`,
/// blocking commands, long pipelines, or `SUBSCRIBE` and `MONITOR` read with
/// ``receive()``.
///
/// ```swift
/// let replies = try client.withConnection { connection in
///     try connection.transaction([["INCR", "a"], ["INCR", "b"]])
/// }
/// ```
///
/// It is lent, not given. It is not `Sendable`: the thread that runs the
/// closure is the one that uses it. It is valid while the closure runs:
/// kept and called afterwards, every call throws ``RedisError/Code/closed``
/// and nothing reaches the server, because the connection behind it is back
/// in the pool, another caller's. The hiredis context itself never leaves
/// the library.
public final class RedisBlockingConnection {
    /// The lent connection, `nil` once the closure returned.
    private var connection: RedisConnection?

    /// The server this connection talks to.
    public let address: RedisServerAddress

    init(lending connection: RedisConnection) {
        self.connection = connection
        self.address = connection.address
    }

    /// Ends the loan: every later call throws.
    func end() { connection = nil }

    /// The lent connection, for calls inside the closure.
    var lent: RedisConnection {
        get throws(RedisError) {
            guard let connection else {
                throw RedisError(.closed, "this connection was lent to a withConnection body that has returned; it is another caller's now")
            }
            return connection
        }
    }

    /// Sends one command and returns its reply; a top-level error reply is
    /// thrown as ``RedisError/Code/server``, and the connection stays usable.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        try lent.send(arguments)
    }

    /// Sends one command and returns its reply (variadic form).
    @discardableResult
    public func send(_ arguments: RedisArgument...) throws(RedisError) -> RedisReply {
        try send(arguments)
    }

    /// Sends every command before reading any reply; error replies are
    /// `.error` values, so one failing command does not hide the others.
    public func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisReply] {
        try lent.pipeline(commands)
    }

    /// Runs `commands` atomically: `MULTI`, the commands, `EXEC`, in one write.
    ///
    /// - Returns: `EXEC`'s replies, one per command (error replies as
    ///   `.error`), or `nil` when a `WATCH`ed key changed and nothing ran.
    /// - Throws: ``RedisError/Code/server`` when the server refused a
    ///   command while queueing (`EXECABORT`), or a connection error.
    public func transaction(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisReply]? {
        try RedisReply.transactionResult(lent.pipeline([["MULTI"]] + commands + [["EXEC"]]))
    }

    /// Waits for the next message the server sends without a request: after
    /// `SUBSCRIBE` (each further confirmation, then every published
    /// message) or `MONITOR`. The connection is discarded, not pooled, once
    /// the closure returns.
    ///
    /// - Throws: ``RedisError/Code/readTimeout`` when nothing arrives within
    ///   `commandTimeout`, or another connection-fatal code.
    public func receive() throws(RedisError) -> RedisReply {
        try lent.receive()
    }
}

@available(*, unavailable, message: "a lent connection is used by the thread running the withConnection body, and only there")
extension RedisBlockingConnection: Sendable {}

extension RedisReply {
    /// What a `MULTI` ... `EXEC` pipeline's replies mean: `EXEC`'s replies,
    /// or `nil` when a `WATCH`ed key changed; throws `EXECABORT` and the like.
    static func transactionResult(_ replies: [RedisReply]) throws(RedisError) -> [RedisReply]? {
        guard let exec = replies.last else { return [] }
        switch exec {
        case .null: return nil
        case .array(let results): return results
        default:
            try exec.throwingServerError()
            throw RedisError(.protocolError, "EXEC returned \(exec.kindName)")
        }
    }
}
