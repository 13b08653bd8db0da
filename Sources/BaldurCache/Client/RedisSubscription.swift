/// A message published to a channel this client subscribed to.
public struct RedisPubSubMessage: Sendable, Hashable {
    /// The channel it was published to.
    public let channel: String
    /// The message, as published (binary-safe).
    public let payload: [UInt8]

    /// The payload as UTF-8 text.
    public var text: String { String(decoding: payload, as: UTF8.self) }
}

/// The messages of a subscription, as an `AsyncSequence`, on a connection of
/// its own (`SUBSCRIBE`). Dropping the sequence (or cancelling the task that
/// iterates it) closes that connection, which ends the subscription; so does
/// closing the client (the sequence then ends without error).
///
/// ```swift
/// let messages = try await client.subscribe(to: ["orders"])
/// for try await message in messages {
///     print(message.channel, message.text)
/// }
/// ```
///
/// The sequence ends with an error when the connection fails (the server
/// went away): subscribe again to resume; messages published meanwhile are
/// lost, as with any Redis pub/sub.
public struct RedisSubscription: AsyncSequence, Sendable {
    /// Each element is one published message.
    public typealias Element = RedisPubSubMessage
    let stream: AsyncThrowingStream<RedisPubSubMessage, any Error>

    /// The iterator: one per subscription.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<RedisPubSubMessage, any Error>.AsyncIterator

        /// The next message, or `nil` once the subscription ended.
        public mutating func next() async throws -> RedisPubSubMessage? {
            try await base.next()
        }
    }

    /// The iterator over the messages; a subscription is iterated once.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator())
    }
}

extension RedisClient {
    /// Subscribes to `channels` (`SUBSCRIBE`) on a dedicated connection and
    /// returns once the server confirmed every channel, so a message
    /// published after this returns is delivered.
    ///
    /// - Throws: ``RedisError/Code/invalidArgument`` for no channel, or a
    ///   connection error.
    public func subscribe(to channels: [String]) async throws -> RedisSubscription {
        guard !channels.isEmpty else { throw RedisError(.invalidArgument, "subscribe needs at least one channel") }
        let (stream, continuation) = AsyncThrowingStream<RedisPubSubMessage, any Error>.makeStream()
        let confirmations = PlainMutex<(left: Int, waiter: CheckedContinuation<Void, any Error>?)>((channels.count, nil))
        let onPush: @Sendable (RedisReply) -> Void = { reply in
            guard let parts = reply.array, parts.count >= 3, let kind = parts[0].string else { return }
            switch kind {
            case "message":
                continuation.yield(RedisPubSubMessage(channel: parts[1].string ?? "", payload: parts[2].bytes ?? []))
            case "subscribe":
                let waiter = confirmations.withLock { state -> CheckedContinuation<Void, any Error>? in
                    state.left -= 1
                    guard state.left == 0 else { return nil }
                    defer { state.waiter = nil }
                    return state.waiter
                }
                waiter?.resume()
            default:
                break
            }
        }
        let onClose: @Sendable (RedisError) -> Void = { error in
            let waiter = confirmations.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(throwing: error)
            continuation.finish(throwing: error.code == .closed ? nil : error)
        }
        let connection = try await serverPool(for: []).openSubscription(onPush: onPush, onClose: onClose)
        continuation.onTermination = { _ in connection.closeSoon() }
        do {
            try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Void, any Error>) in
                confirmations.withLock { $0.waiter = waiter }
                do {
                    try connection.sendWithoutReply(["SUBSCRIBE"] + channels.map { RedisArgument($0) })
                } catch {
                    let waiter = confirmations.withLock { state in
                        defer { state.waiter = nil }
                        return state.waiter
                    }
                    waiter?.resume(throwing: error)
                }
            }
        } catch {
            await connection.close(graceful: false)
            throw error
        }
        return RedisSubscription(stream: stream)
    }
}
