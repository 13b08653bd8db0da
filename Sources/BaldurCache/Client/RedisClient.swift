import Logging

/// A thread-safe, pooled Redis client: send any command, pipelines, scripts.
///
/// `RedisClient` is `Sendable`; share one per process. Connections are opened
/// lazily up to ``RedisConfiguration/Pool/maxConnections`` and reused.
///
/// ```swift
/// let client = try RedisClient(url: "redis://127.0.0.1:6379/0")
/// try client.send("SET", "greeting", "hello")
/// let value = try client.send("GET", "greeting").string   // "hello"
/// ```
///
/// ## Retries
/// With ``RedisConfiguration/Retry/onTimeout`` (the default), a command that
/// fails with a read or write timeout, EOF or I/O error is sent once more on a fresh
/// connection **only if it is read-only**, so a retry can never apply a write
/// twice. The commands that retry are exactly those in
/// ``RedisClient/retryableCommands``: `GET`, `MGET`, `EXISTS`, `TTL`, `PTTL`,
/// `TYPE`, `STRLEN`, `GETRANGE`, `HGET`, `HMGET`, `HGETALL`, `HEXISTS`,
/// `HLEN`, `HKEYS`, `HVALS`, `LRANGE`, `LLEN`, `LINDEX`, `SCARD`, `SMEMBERS`,
/// `SISMEMBER`, `ZCARD`, `ZSCORE`, `ZRANGE`, `SCAN`, `KEYS`, `DBSIZE`, `PING`,
/// `ECHO`, `TIME`, `INFO`. A pipeline retries only when every command in it
/// is one of those. Writes (`SET`, `INCRBY`, `DEL`, `EVALSHA`, ...) never retry:
/// their error reaches the caller, who knows whether a second try is safe.
///
/// ## Pooled connections
/// A connection returns to the pool only with no reply left unread and its
/// session as configured; one left in `MULTI`/`WATCH`, on another database
/// or subscribed is discarded. `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` and
/// `MONITOR` cannot go through `send(_:)` or
/// `pipeline(_:)`: use `subscribe(to:)`, or send them inside
/// `withConnection(routedBy:_:)` and read with ``RedisBlockingConnection/receive()``.
public final class RedisClient: Sendable {
    /// The configuration this client was made with.
    public let configuration: RedisConfiguration
    let router: any ConnectionRouter
    /// The router when it is a cluster's: commands are routed by key (see `RedisClient+Cluster.swift`).
    let cluster: ClusterRouter?
    let logger: Logger
    /// Bounds how many lock waiters hold a connection in `BLPOP` (see ``RedisLockStore``).
    let blockingWaiters: BlockingWaiterBudget
    /// Lock waiters beyond that budget, woken by this client's releases (see ``LocalLockWaiters``).
    let localLockWaiters = LocalLockWaiters()
    /// Metrics and spans (see ``RedisObservability``).
    let telemetry: Telemetry

    /// The read-only commands that are retried once after a timeout or a dropped connection.
    public static let retryableCommands: Set<String> = [
        "GET", "MGET", "EXISTS", "TTL", "PTTL", "TYPE", "STRLEN", "GETRANGE",
        "HGET", "HMGET", "HGETALL", "HEXISTS", "HLEN", "HKEYS", "HVALS",
        "LRANGE", "LLEN", "LINDEX", "SCARD", "SMEMBERS", "SISMEMBER",
        "ZCARD", "ZSCORE", "ZRANGE", "SCAN", "KEYS", "DBSIZE", "PING", "ECHO", "TIME", "INFO",
    ]

    /// Creates a client. No connection is opened until the first command.
    ///
    /// - Parameters:
    ///   - configuration: Where Redis is and how the pool behaves.
    ///   - logger: Receives debug and info messages (never values or passwords).
    ///   - observability: Where metrics and spans go; by default the
    ///     process-wide backends (none unless bootstrapped).
    /// - Throws: ``RedisError/Code/invalidConfiguration`` for out-of-range
    ///   values (a cluster with a database other than 0 among them).
    public init(
        configuration: RedisConfiguration, logger: Logger = Logger(label: "BaldurCache"), observability: RedisObservability = .global
    ) throws(RedisError) {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        var server: RedisServerAddress?
        if case .standalone(let address) = configuration.topology { server = address }
        self.telemetry = Telemetry(observability, server: server, database: configuration.database)
        self.router = try ConnectionRouters.make(configuration, logger: logger, telemetry: telemetry)
        self.cluster = router as? ClusterRouter
        self.blockingWaiters = BlockingWaiterBudget(maxConnections: configuration.pool.maxConnections)
        logger.debug("redis client created", metadata: ["redis.url": "\(configuration)"])
    }

    /// Creates a client from a URL (see ``RedisConfiguration/init(url:)``).
    public convenience init(url: String, logger: Logger = Logger(label: "BaldurCache"), observability: RedisObservability = .global) throws(RedisError) {
        try self.init(configuration: try RedisConfiguration(url: url), logger: logger, observability: observability)
    }

    /// Sends one command and returns its reply. Sends exactly the arguments given.
    ///
    /// - Returns: The reply; a top-level error reply is thrown instead.
    /// - Throws: ``RedisError``: `server` with the server's message verbatim,
    ///   or a connection, timeout, pool or `closed` code.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        try sendAllowingErrorReply(arguments).throwingServerError()
    }

    /// Sends one command and returns its reply (variadic form of `send(_:)`).
    @discardableResult
    public func send(_ arguments: RedisArgument...) throws(RedisError) -> RedisReply {
        try send(arguments)
    }

    /// Like ``send(_:)`` but returns an error reply as `.error` instead of throwing it.
    func sendAllowingErrorReply(_ arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        guard telemetry.isEnabled else { return try sendUnobserved(arguments) }
        return try telemetry.command(
            Telemetry.operationName(of: arguments), key: arguments.count > 1 ? arguments[1] : nil,
            failure: { reply in if case .error(let message) = reply { RedisError(.server, message) } else { nil } }
        ) { () throws(RedisError) in try sendUnobserved(arguments) }
    }

    @inline(__always)
    private func sendUnobserved(_ arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        guard let first = arguments.first else {
            throw RedisError(.invalidArgument, "a command needs at least one argument")
        }
        if let cluster { return try clusterSend(arguments, on: cluster) }
        return try withRetry(first.isCommand(in: Self.retryableCommands), refusedAsReadOnly: { $0.isReadOnlyRefusal }) { connection throws(RedisError) in
            try connection.sendAllowingErrorReply(arguments, pooled: true)
        } pool: { () throws(RedisError) in
            try self.router.pool(for: arguments)
        }
    }

    /// Sends every command before reading any reply, on one connection.
    ///
    /// - Parameter commands: The commands, in order. An empty list sends nothing.
    /// - Returns: One reply per command, in order; error replies are `.error` values.
    /// - Throws: ``RedisError`` when the connection fails.
    public func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisReply] {
        guard let first = commands.first else { return [] }
        guard telemetry.isEnabled else { return try pipelineUnobserved(commands, first: first) }
        return try telemetry.command("PIPELINE", batchSize: commands.count) { () throws(RedisError) in
            try pipelineUnobserved(commands, first: first)
        }
    }

    @inline(__always)
    private func pipelineUnobserved(_ commands: [[RedisArgument]], first: [RedisArgument]) throws(RedisError) -> [RedisReply] {
        if let cluster { return try clusterPipeline(commands, on: cluster) }
        return try withRetry(commands.allSatisfy { $0.first?.isCommand(in: Self.retryableCommands) ?? false }) { connection throws(RedisError) in
            try connection.pipeline(commands, pooled: true)
        } pool: { () throws(RedisError) in
            try self.router.pool(for: first)
        }
    }

    /// Pipelines `count` commands built on demand by `command`, on one
    /// connection, sending early ones while later ones are built (see
    /// ``RedisConnection/pipeline(count:_:)``). The connection is chosen as
    /// for `routing`, typically the first command's name and key.
    func pipeline(
        count: Int,
        routedLike routing: [RedisArgument],
        retryable: Bool,
        _ command: (Int) throws(RedisError) -> [RedisArgument]
    ) throws(RedisError) -> [RedisReply] {
        guard count > 0 else { return [] }
        return try withoutActuallyEscaping(command) { command throws(RedisError) in
            let run = { () throws(RedisError) -> [RedisReply] in
                if let cluster = self.cluster {
                    return try self.clusterPipeline(try (0..<count).map { index throws(RedisError) in try command(index) }, on: cluster)
                }
                return try self.withRetry(retryable) { connection throws(RedisError) in
                    try connection.pipeline(count: count, pooled: true, command)
                } pool: { () throws(RedisError) in
                    try self.router.pool(for: routing)
                }
            }
            guard telemetry.isEnabled else { return try run() }
            return try telemetry.command("PIPELINE", batchSize: count, run)
        }
    }

    /// Runs `body` with one connection of its own, for `MULTI`/`EXEC`,
    /// `WATCH` or a long pipeline; the connection goes back to the pool
    /// afterwards, or is closed if it broke. Not retried.
    ///
    /// ```swift
    /// let replies = try client.withConnection { connection in
    ///     try connection.transaction([["INCR", "a"], ["INCR", "b"]])
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - key: In a cluster, required: the connection goes to the
    ///     master of this key's slot, and every key the commands touch must be
    ///     in that slot (else the server answers `CROSSSLOT` or `MOVED`). Use
    ///     a hash tag (`{user:7}:a`, `{user:7}:b`) to keep keys in one slot.
    ///     Ignored on a single server.
    ///   - body: Runs with the connection, which no other caller uses
    ///     meanwhile; it is lent for the body's run only (see ``RedisBlockingConnection``).
    /// - Throws: ``RedisError/Code/invalidArgument`` in a cluster without `key`.
    public func withConnection<R>(routedBy key: String? = nil, _ body: (RedisBlockingConnection) throws -> R) throws -> R {
        try connectionPool(routedBy: key).withConnection { connection in
            let lent = RedisBlockingConnection(lending: connection)
            defer { lent.end() }
            return try body(lent)
        }
    }

    /// What ``withConnection(routedBy:_:)`` without a key throws in a cluster.
    static let unroutedConnectionError = RedisError(
        .invalidArgument, "in a Redis Cluster a connection serves one slot: pass withConnection(routedBy:) a key of that slot"
    )

    /// The pool a dedicated connection comes from (see ``withConnection(routedBy:_:)``).
    func connectionPool(routedBy key: String?) throws(RedisError) -> ServerPool {
        guard let cluster, let slot = try dedicatedSlot(routedBy: key) else { return try router.pool(for: []) }
        return try cluster.node(for: slot).pool
    }

    /// Where a dedicated connection for `key` goes, for both APIs'
    /// `withConnection(routedBy:)`: in a cluster the master of the key's
    /// slot, and a key is required; `nil` elsewhere (the router's server).
    func dedicatedSlot(routedBy key: String?) throws(RedisError) -> ClusterTarget? {
        guard cluster != nil else { return nil }
        guard let key else { throw Self.unroutedConnectionError }
        return .slot(ClusterSlot.of(key))
    }

    /// Sends `PING` and checks for `PONG`.
    ///
    /// - Throws: ``RedisError`` when the server cannot be reached.
    public func ping() throws(RedisError) {
        let reply = try send("PING")
        guard reply.string == "PONG" else {
            throw RedisError(.protocolError, "PING returned \(reply.kindName) instead of PONG")
        }
    }

    /// Closes every pooled connection, the async API's too, and proves the
    /// server is back with a `PING` on a new one. Connections in use are
    /// closed when they are returned; the async API's shared connections
    /// once their requests in flight are answered.
    ///
    /// - Throws: ``RedisError`` when the `PING` fails.
    public func reconnect() throws(RedisError) {
        for server in router.servers { server.drain() }
        logger.info("redis connections dropped for reconnect", metadata: ["redis.url": "\(configuration)"])
        try ping()
    }

    /// Closes every connection at once, the async API's too (their calls in
    /// flight fail with ``RedisError/Code/closed``; ``shutdown()`` lets them
    /// finish). Idempotent; later calls throw ``RedisError/Code/closed``.
    public func close() {
        router.close()
        for server in router.servers { server.close() }
    }

    /// The number of connections open now across all pools (idle or in
    /// use), the async API's pipelined and dedicated ones included.
    public var openConnections: Int {
        router.servers.reduce(0) { $0 + $1.openConnections }
    }

    /// When a failed call is sent again (see ``RetryPolicy``).
    var retryPolicy: RetryPolicy { RetryPolicy(retryOnTimeout: configuration.retry.onTimeout) }

    /// `retryable` is only asked after a transient failure, so the happy path
    /// never looks the command names up. A result that `refusedAsReadOnly`
    /// (a `READONLY` refusal: the command did not run) is sent once more
    /// when the router moved to another server (Sentinel failover).
    func withRetry<R>(
        _ retryable: @autoclosure () -> Bool,
        refusedAsReadOnly: (R) -> Bool = { _ in false },
        _ body: (RedisConnection) throws(RedisError) -> R,
        pool choose: () throws(RedisError) -> ServerPool
    ) throws(RedisError) -> R {
        var attempt = 0
        while true {
            attempt += 1
            let pool = try choose()
            let pooled: ServerPool.PooledConnection
            do { pooled = try pool.checkout() } catch {
                // A pool a failover retired after it was chosen: nothing was sent, try the new one.
                if retryPolicy.decide(after: error, attempt: attempt, readOnly: retryable) == .resendOnNewServer,
                   let current = try? choose(), current !== pool {
                    continue
                }
                router.failed(error, at: pool.address)
                throw error
            }
            do {
                let result = try body(pooled.connection)
                pool.checkin(pooled)
                if attempt == 1, refusedAsReadOnly(result), try router.refusedAsReadOnly(at: pool.address) {
                    logger.debug("redis command sent again to the new master after READONLY", metadata: ["redis.address": "\(pool.address)"])
                    continue
                }
                return result
            } catch {
                pool.checkin(pooled)
                router.failed(error, at: pool.address)
                guard retryPolicy.decide(after: error, attempt: attempt, readOnly: retryable) == .resendOnFreshConnection else { throw error }
                logger.debug("redis read-only command retried on a fresh connection", metadata: [
                    "redis.address": "\(pool.address)", "error": "\(error.code)",
                ])
            }
        }
    }
}
