import Dispatch
import Logging
import Synchronization

/// A bounded, thread-safe pool of connections to one server.
///
/// - At most `maxConnections` connections are in use at once; they are opened
///   lazily, on demand, and reused last-in first-out so that the warmest
///   connection serves the next caller.
/// - A caller that finds every connection busy waits up to `poolTimeout`,
///   then gets ``RedisError/Code/poolExhausted``.
/// - An idle connection the server closed (its socket reads EOF) is
///   discarded before it is handed out, so a server restart costs no failed
///   command; one unused for longer than `healthCheckInterval` is also
///   checked with `PING`.
/// - A connection that failed fatally is closed (reset, see
///   ``RedisConnection/close(resetting:)``), never returned to the pool. So
///   is one whose session a caller left changed (an open `MULTI`, another
///   database, unread replies): see ``RedisConnection/isReusable``.
/// - Failed connects back off as ``ConnectBackoff`` says (from the second
///   failure in a row, 25 ms doubling to 1 s; callers meanwhile get the last
///   connect error at once). The first connection that works resets it.
final class ConnectionPool: Sendable {
    let address: RedisServerAddress
    private let configuration: RedisConfiguration
    private let logger: Logger
    /// One permit per connection that may be in use.
    private let permits: DispatchSemaphore
    private let state = PlainMutex(State())
    /// Mirrors `State.closed` so that a checkout on a closed pool fails without taking the lock.
    private let isClosed = Atomic<Bool>(false)

    private struct State: Sendable {
        var idle: [PooledConnection] = []
        /// Every connection open now, idle or in use, and every one being
        /// opened, by their abort handles: what ``retire(because:)`` reaches.
        var open: [ObjectIdentifier: ConnectionAbort] = [:]
        var connecting: [ObjectIdentifier: ConnectionAbort] = [:]
        var closed = false
        /// Bumped by `drain()`: connections from an older generation are closed on return.
        var generation = 0
    }

    /// A connection and the pool generation it was opened in.
    struct PooledConnection: Sendable {
        let connection: RedisConnection
        let generation: Int
    }

    /// Gauges of idle and used connections and waiting callers, when metrics are on.
    private let meters: Telemetry.PoolMeters?
    /// When a new connect may be tried after failed ones: shared with the
    /// server's ``EnginePool`` (see ``ServerPool``). Taken after `state`'s
    /// lock when both are held, never before it.
    private let connects: SharedConnectBackoff

    init(
        address: RedisServerAddress, configuration: RedisConfiguration, logger: Logger, meters: Telemetry.PoolMeters? = nil,
        connects: SharedConnectBackoff = SharedConnectBackoff()
    ) {
        self.address = address
        self.configuration = configuration
        self.logger = logger
        self.meters = meters
        self.connects = connects
        self.permits = DispatchSemaphore(value: configuration.pool.maxConnections)
    }

    /// The number of connections open now, idle or in use.
    var openConnections: Int { state.withLock { $0.open.count } }

    /// The number of idle connections waiting in the pool.
    var idleConnections: Int { state.withLock { $0.idle.count } }

    /// Runs `body` with a connection of its own and returns the connection to
    /// the pool afterwards (or closes it if it broke).
    func withConnection<R>(_ body: (RedisConnection) throws -> R) throws -> R {
        let pooled = try checkout()
        defer { checkin(pooled) }
        return try body(pooled.connection)
    }

    /// Takes a connection for one caller; pair with ``checkin(_:)``.
    func checkout() throws(RedisError) -> PooledConnection {
        let pooled = try takeConnection()
        // Counted process-wide so that replies are not spun for while many callers compete for the CPUs.
        ReplySpin.connectionsInUse.wrappingAdd(1, ordering: .relaxed)
        reportConnections()
        return pooled
    }

    /// Takes a permit, waiting until `deadline`; with metrics on, a caller
    /// that has to wait is counted in `db.client.connection.pending_requests`.
    private func takePermit(until deadline: DispatchTime) -> Bool {
        guard let meters else { return permits.wait(timeout: deadline) == .success }
        if permits.wait(timeout: .now()) == .success { return true }
        meters.waiting.increment()
        defer { meters.waiting.decrement() }
        return permits.wait(timeout: deadline) == .success
    }

    /// Sets the idle and used connection gauges from the pool's state.
    private func reportConnections() {
        guard let meters else { return }
        let (idle, open) = state.withLock { ($0.idle.count, $0.open.count) }
        meters.idle.set(idle)
        meters.used.set(max(open - idle, 0))
    }

    private func takeConnection() throws(RedisError) -> PooledConnection {
        if isClosed.load(ordering: .acquiring) { throw closedError() }
        let waitUntil = DispatchTime.now() + .nanoseconds(Int(configuration.pool.timeout.nanoseconds))
        guard takePermit(until: waitUntil) else {
            logger.debug("redis pool exhausted", metadata: ["redis.address": "\(address)"])
            throw RedisError(
                .poolExhausted,
                "all \(configuration.pool.maxConnections) connections to \(address) stayed busy for \(configuration.pool.timeout)"
            )
        }
        // From here on the permit is ours: give it back on every failure path.
        while true {
            let taken: (PooledConnection?, Int)? = state.withLock { state in
                if state.closed { return nil }
                return (state.idle.popLast(), state.generation)
            }
            guard let (idle, generation) = taken else {
                permits.signal()
                throw closedError()
            }
            guard let idle else {
                return try open(generation: generation)
            }
            if idle.connection.hasUnexpectedInput {
                // Closed by the server while idle (restart, CLIENT KILL, idle timeout).
                logger.debug("redis idle connection was closed by the server", metadata: ["redis.address": "\(address)"])
                discard(idle.connection)
                continue
            }
            if ContinuousClock.now - idle.connection.lastUsed < configuration.pool.healthCheckInterval {
                return idle
            }
            do {
                try idle.connection.send(["PING"])
                return idle
            } catch {
                logger.debug("redis idle connection failed its health check", metadata: [
                    "redis.address": "\(address)", "error": "\(error)",
                ])
                discard(idle.connection)
            }
        }
    }

    func checkin(_ pooled: PooledConnection) {
        ReplySpin.connectionsInUse.wrappingSubtract(1, ordering: .relaxed)
        let connection = pooled.connection
        let reusable = connection.isReusable
        let refused = !reusable && connection.refusedByServer
        if reusable {
            connects.reset()
        } else if refused {
            _ = connects.failed(RedisError(.connectionRefused, "\(address) refused the connection (\(RedisConnection.tooManyClients))"))
        }
        let keep = state.withLock { state in
            guard !state.closed, reusable, pooled.generation == state.generation else { return false }
            state.idle.append(pooled)
            return true
        }
        if !keep {
            if connection.isOpen && !reusable {
                logger.debug("redis connection discarded: its session was left changed or replies were left unread", metadata: ["redis.address": "\(address)"])
            }
            discard(connection)
        }
        permits.signal()
        reportConnections()
    }

    /// Closes every idle connection and marks connections in use to be
    /// closed when they come back. The pool stays usable.
    func drain() {
        let idle = state.withLock { state in
            state.generation += 1
            connects.reset()
            defer { state.idle.removeAll() }
            return state.idle
        }
        for pooled in idle { discard(pooled.connection) }
        reportConnections()
    }

    /// Closes every connection; later checkouts throw ``RedisError/Code/closed``. Idempotent.
    func close() {
        isClosed.store(true, ordering: .releasing)
        let idle = state.withLock { state in
            state.closed = true
            defer { state.idle.removeAll() }
            return state.idle
        }
        for pooled in idle { discard(pooled.connection) }
        reportConnections()
    }

    /// Closes the pool as ``close()`` does, and ends at once the calls in
    /// flight on its connections and the connects under way (see
    /// ``ConnectionAbort``): for a server that must not be waited on any
    /// more, such as a master a failover demoted.
    ///
    /// - Parameter reason: Why, in words, for the callers' errors.
    func retire(because reason: String) {
        close()
        let handles = state.withLock { Array($0.open.values) + Array($0.connecting.values) }
        for handle in handles { handle.abort(because: reason) }
    }

    private func open(generation: Int) throws(RedisError) -> PooledConnection {
        let backingOff = connects.refusal()
        if let backingOff {
            permits.signal()
            throw backingOff
        }
        let handle = ConnectionAbort()
        let key = ObjectIdentifier(handle)
        // Registered before the connect, so that retire(because:) reaches it.
        guard state.withLock({ state in
            if !state.closed { state.connecting[key] = handle }
            return !state.closed
        }) else {
            permits.signal()
            throw closedError()
        }
        do {
            let connection = try RedisConnection(address: address, configuration: configuration, abortHandle: handle)
            state.withLock { state in
                state.connecting[key] = nil
                state.open[key] = handle
            }
            logger.debug("redis connection opened", metadata: ["redis.address": "\(address)"])
            return PooledConnection(connection: connection, generation: generation)
        } catch {
            state.withLock { _ = $0.connecting.removeValue(forKey: key) }
            let backingOff = connects.failed(error)
            permits.signal()
            if backingOff {
                // Once per outage: the second failed connect in a row starts the back-off.
                logger.warning("redis connects failing; backing off between attempts", metadata: ["redis.address": "\(address)", "error": "\(error.code)"])
            } else {
                logger.debug("redis connect failed", metadata: ["redis.address": "\(address)", "error": "\(error)"])
            }
            throw error
        }
    }

    private func discard(_ connection: RedisConnection) {
        connection.close(resetting: true)
        state.withLock { _ = $0.open.removeValue(forKey: ObjectIdentifier(connection.abortHandle)) }
    }

    private func closedError() -> RedisError {
        RedisError(.closed, "the Redis client for \(address) was closed")
    }
}
