import Logging

/// Keeps Redis tracking the keys of a near cache, over RESP2.
///
/// One connection of its own asks for its id (`CLIENT ID`), turns tracking
/// on with itself as the redirect target, in broadcasting mode for the
/// adapter's prefixes (`CLIENT TRACKING on REDIRECT <id> BCAST PREFIX p`),
/// and subscribes to `__redis__:invalidate`. Once Redis confirms the
/// subscription, the cache serves; every message names keys that changed
/// (or is `null`: a flush, drop everything).
///
/// Broadcasting rather than Redis' default mode: the default mode makes
/// Redis remember every key each connection read, so every data connection
/// (the pool's, the engine's) would need tracking turned on before its
/// first read, and a read on a connection not yet tracked could be kept
/// stale. Broadcasting needs one connection and no per-read bookkeeping on
/// the server; its price is an invalidation for every write under the
/// prefix, read here or not.
///
/// When the connection drops, the cache is emptied and bypassed at once
/// (every read goes to Redis), and a new connection is made with backoff;
/// the cache serves again only once it is subscribed.
final class NearCacheTracker: Sendable {
    static let channel = "__redis__:invalidate"

    private let store: NearCacheStore
    private let client: RedisClient
    private let prefixes: [String]
    private let logger: Logger

    private struct State {
        var connection: EventLoopConnection?
        var task: Task<Void, Never>?
        var closed = false
        /// Connections made, for the log and the tests.
        var connects = 0
    }

    private let state = PlainMutex(State())

    init(store: NearCacheStore, client: RedisClient, prefixes: [String], logger: Logger) {
        self.store = store
        self.client = client
        self.prefixes = prefixes
        self.logger = logger
    }

    /// Starts keeping a tracking connection up, in a task of its own.
    func start() {
        let task = Task { [self] in await keepTracking() }
        let closed = state.withLock { state in
            state.task = task
            return state.closed
        }
        if closed { task.cancel() }
    }

    /// Stops tracking: closes the connection; the cache is emptied and bypassed.
    func close() {
        let (connection, task) = state.withLock { state in
            state.closed = true
            return (state.connection, state.task)
        }
        task?.cancel()
        connection?.closeSoon()
        store.invalidateAll(fromServer: false, tracking: false)
    }

    /// How many tracking connections were made so far.
    var connects: Int { state.withLock { $0.connects } }

    private var isClosed: Bool { state.withLock { $0.closed } }

    private func keepTracking() async {
        var backoff = Backoff(initial: .milliseconds(20), cap: .seconds(2))
        while !isClosed, !Task.isCancelled {
            do {
                try await trackOnce()
                backoff.reset()
            } catch {
                // The client was closed under the adapter: nothing to track with any more.
                if isClosed || (error as? RedisError)?.code == .closed { break }
                // Warn once per outage; the retries after it log at debug level.
                let level: Logger.Level = backoff.failures == 0 ? .warning : .debug
                logger.log(level: level, "redis near cache cannot track keys; reads go to Redis until it can", metadata: [
                    "error.code": "\(((error as? RedisError)?.code).map { "\($0)" } ?? "other")", "error": "\(error)",
                ])
            }
            guard !isClosed else { break }
            try? await Task.sleep(for: backoff.nextDelay())
        }
    }

    /// One tracking connection, from connect to drop.
    private func trackOnce() async throws {
        let (dropped, droppedContinuation) = AsyncStream<RedisError>.makeStream()
        let connection = try await client.serverPool(for: []).openSubscription(
            onPush: { [store, prefixes] reply in Self.handle(reply, store: store, prefixes: prefixes) },
            onClose: { [store] error in
                store.invalidateAll(fromServer: false, tracking: false)
                droppedContinuation.yield(error)
                droppedContinuation.finish()
            }
        )
        let closed = state.withLock { state in
            state.connection = connection
            state.connects += 1
            return state.closed
        }
        guard !closed else {
            connection.closeSoon()
            return
        }
        do {
            guard let id = try await connection.send(["CLIENT", "ID"]).throwingServerError().integer else {
                throw RedisError(.protocolError, "CLIENT ID did not return an integer")
            }
            var tracking: [RedisArgument] = ["CLIENT", "TRACKING", "on", "REDIRECT", RedisArgument(id), "BCAST"]
            for prefix in prefixes where !prefix.isEmpty { tracking += ["PREFIX", RedisArgument(prefix)] }
            try await connection.send(tracking).throwingServerError()
            // Serving starts when the subscription is confirmed (handle).
            try connection.sendWithoutReply(["SUBSCRIBE", RedisArgument(Self.channel)])
        } catch {
            connection.closeSoon()
            throw error
        }
        for await error in dropped {
            if !isClosed {
                logger.warning("redis near cache lost its tracking connection; emptied, and bypassed until tracking is back", metadata: [
                    "error.code": "\(error.code)",
                ])
            }
            break
        }
    }

    /// A push on the tracking connection: the subscription's confirmation,
    /// or an invalidation (keys, or `null` for a flush).
    private static func handle(_ reply: RedisReply, store: NearCacheStore, prefixes: [String]) {
        guard case .array(let parts) = reply, parts.count >= 3, let kind = parts[0].string, parts[1].string == channel else { return }
        switch kind {
        case "subscribe":
            store.invalidateAll(fromServer: false, tracking: true)
        case "message":
            switch parts[2] {
            case .array(let keys):
                for key in keys {
                    if let bytes = key.bytes, let key = NearKey(splitting: String(decoding: bytes, as: UTF8.self), prefixes: prefixes.isEmpty ? [""] : prefixes) {
                        store.invalidate(key, fromServer: true)
                    }
                }
            case .null:
                store.invalidateAll(fromServer: true)
            default:
                break
            }
        default:
            break
        }
    }
}
