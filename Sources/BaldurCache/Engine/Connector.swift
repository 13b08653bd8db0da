import Foundation

/// Opens connections for the engine off Swift's cooperative thread pool.
///
/// hiredis connects, authenticates and selects the database with blocking
/// calls (bounded by `connectTimeout`). Each connect runs on a thread of its
/// own, and the caller suspends until the connection is ready: a slow or
/// unreachable server never parks a task's thread, and never delays a
/// connect to another server. (Connects once shared 16 serial queues, and
/// 20 connects hung on a stalled server held a healthy server's connect
/// 2.7 s behind them.) A connect is rare next to the calls it serves, and
/// a thread costs less than its TCP handshake.
enum Connector {
    /// Connects to `address`, then hands the connection to an event loop.
    /// `abortHandle` can end the connect from another thread.
    static func open(
        _ address: RedisServerAddress, configuration: RedisConfiguration, dedicated: Bool,
        abortHandle: ConnectionAbort = ConnectionAbort(),
        onPush: (@Sendable (RedisReply) -> Void)? = nil, onClose: (@Sendable (RedisError) -> Void)? = nil
    ) async throws(RedisError) -> EventLoopConnection {
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<EventLoopConnection, RedisError>, Never>) in
            startThread(named: "baldur-connect") {
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
