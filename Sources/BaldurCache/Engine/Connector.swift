import Dispatch

/// Opens connections for the engine off Swift's cooperative thread pool.
///
/// hiredis connects, authenticates and selects the database with blocking
/// calls (bounded by `connectTimeout`). Those run here, on 16 serial
/// dispatch queues used round-robin (each gets a thread of its own while it
/// has work), and the caller suspends until the connection is ready; a
/// slow or unreachable server never parks a task's thread.
enum Connector {
    private static let lanes = (0..<16).map { DispatchQueue(label: "BaldurCache.connect.\($0)") }
    private static let next = PlainMutex(0)

    /// Connects to `address`, then hands the connection to an event loop.
    /// `abortHandle` can end the connect from another thread.
    static func open(
        _ address: RedisServerAddress, configuration: RedisConfiguration, dedicated: Bool,
        abortHandle: ConnectionAbort = ConnectionAbort(),
        onPush: (@Sendable (RedisReply) -> Void)? = nil, onClose: (@Sendable (RedisError) -> Void)? = nil
    ) async throws(RedisError) -> EventLoopConnection {
        let lane = lanes[next.withLock { index in
            defer { index = (index + 1) & 15 }
            return index
        }]
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<EventLoopConnection, RedisError>, Never>) in
            lane.async {
                let result = Result { () throws(RedisError) in
                    let connection = try RedisConnection(address: address, configuration: configuration, abortHandle: abortHandle)
                    return try EventLoopConnection(
                        connection, configuration: configuration, loop: EventLoop.next(), dedicated: dedicated, onPush: onPush, onClose: onClose
                    )
                }
                // What this thread built, ordered for ThreadSanitizer, which
                // cannot see the edge a resume makes inside the Swift runtime.
                if case .success(let connection) = result { connection.publish() }
                continuation.resume(returning: result)
            }
        }
        let connection = try result.get()
        connection.receive()
        return connection
    }
}
