import Logging

/// The async API: the same calls as the synchronous one, for `async` code.
///
/// Calls suspend on BaldurCache's event loop instead of blocking a thread:
/// concurrent calls are written back to back over a few shared connections
/// (``RedisConfiguration/Pool/pipelinedConnections``) and each resumes when its
/// reply arrives. Task-locals apply (``SyntheticMode``, the service context
/// for tracing), and a cancelled call resumes at once with
/// `CancellationError`; its reply is read and dropped when it comes.
///
/// ```swift
/// let client = try RedisClient(url: "redis://127.0.0.1:6379/0")
/// try await client.send("SET", "greeting", "hello")
/// let value = try await client.send("GET", "greeting").string   // "hello"
/// ```
///
/// Blocking commands (`BLPOP`, `BRPOP`, `BLMOVE`, `BZPOPMIN`, `WAIT`,
/// `XREAD ... BLOCK`, ...) run on a dedicated connection, never stalling the
/// shared ones; for `MULTI`/`EXEC` and `WATCH` use
/// ``withConnection(_:)-(((RedisDedicatedConnection)async throws->R))``.
extension RedisClient {
    /// Sends one command and returns its reply, without blocking a thread.
    ///
    /// - Returns: The reply; a top-level error reply is thrown instead.
    /// - Throws: ``RedisError`` (`server` with the server's message, or a
    ///   connection, timeout or `closed` code), or `CancellationError`.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RedisReply {
        try await sendAllowingErrorReply(arguments).throwingServerError()
    }

    /// Sends one command and returns its reply (variadic form).
    @discardableResult
    public func send(_ arguments: RedisArgument...) async throws -> RedisReply {
        try await send(arguments)
    }

    /// Like ``send(_:)-([RedisArgument])`` but returns an error reply as `.error`.
    @inline(__always)
    func sendAllowingErrorReply(_ arguments: [RedisArgument]) async throws -> RedisReply {
        guard !arguments.isEmpty else {
            throw RedisError(.invalidArgument, "a command needs at least one argument")
        }
        guard telemetry.isEnabled else { return try await sendUnobserved(arguments) }
        return try await telemetry.command(
            Telemetry.operationName(of: arguments), key: arguments.count > 1 ? arguments[1] : nil,
            failure: { reply in if case .error(let message) = reply { RedisError(.server, message) } else { nil } }
        ) { try await sendUnobserved(arguments) }
    }

    /// The hot path: inlined, so that a call is few async frames (each
    /// costs a frame allocation and, after the reply, a resumption).
    @inline(__always)
    private func sendUnobserved(_ arguments: [RedisArgument]) async throws -> RedisReply {
        if let cluster { return try await clusterSend(arguments, on: cluster) }
        let pool = try await serverPool(for: arguments)
        let reply = try await send(arguments, on: pool)
        // A demoted master refused it (the write did not run): once more on the new master.
        if reply.isReadOnlyRefusal, try await router.refusedAsReadOnly(at: pool.address) {
            logger.debug("redis command sent again to the new master after READONLY")
            return try await send(arguments, on: try await serverPool(for: arguments))
        }
        return reply
    }

    /// Sends one command on `pool`: a dedicated connection for a blocking
    /// command, else a shared one; sent once more as ``retryPool(after:on:command:readOnly:)`` says.
    @inline(__always)
    func send(_ arguments: [RedisArgument], on pool: ServerPool) async throws -> RedisReply {
        if Self.isBlocking(arguments) {
            return try await reportingFailures(at: pool.address) {
                try await pool.withDedicated { connection in try await connection.send(arguments) }
            }
        }
        do {
            return try await pool.onShared { connection in try await connection.send(arguments) }
        } catch let error as RedisError {
            router.failed(error, at: pool.address)
            guard let next = try await retryPool(after: error, on: pool, command: arguments, readOnly: arguments[0].isCommand(in: Self.retryableCommands)) else {
                throw error
            }
            return try await reportingFailures(at: next.address) { try await next.onShared { connection in try await connection.send(arguments) } }
        }
    }

    /// Where a call that failed on `pool` with `error` is sent once more, or
    /// `nil` for nowhere, as ``RetryPolicy`` decides: a request that never
    /// left goes to the server the router serves now, if another; a
    /// read-only one whose reply was lost, on a fresh connection.
    ///
    /// In a cluster the call stays on `pool`, its node: the cluster route
    /// chose it (a redirect, a `SCAN` page's master) and follows redirects
    /// itself, while the router would route the command again by its key.
    private func retryPool(
        after error: RedisError, on pool: ServerPool, command: [RedisArgument], readOnly: @autoclosure () -> Bool
    ) async throws(RedisError) -> ServerPool? {
        switch retryPolicy.decide(after: error, attempt: 1, readOnly: readOnly) {
        case .fail:
            return nil
        case .resendOnNewServer:
            guard cluster == nil else { return nil }
            let next = try await serverPool(for: command)
            guard next !== pool else { return nil }
            logger.debug("redis command sent to the new server: the old one's connections were closed before it was sent", metadata: [
                "redis.address": "\(next.address)",
            ])
            return next
        case .resendOnFreshConnection:
            logger.debug("redis read-only command retried on a fresh connection", metadata: ["error": "\(error.code)"])
            return cluster == nil ? try await serverPool(for: command) : pool
        }
    }

    /// The pool for `command`: at once when the router knows it,
    /// else after it is found (Sentinel discovery, off the cooperative pool).
    @inline(__always)
    func serverPool(for command: [RedisArgument]) async throws(RedisError) -> ServerPool {
        if let pool = try router.readyPool(for: command) { return pool }
        return try await router.pool(for: command)
    }

    /// Runs `body`, telling the router of a failure at `address`.
    func reportingFailures<R>(at address: RedisServerAddress, _ body: () async throws -> R) async throws -> R {
        do { return try await body() } catch let error as RedisError {
            router.failed(error, at: address)
            throw error
        }
    }

    /// Sends every command back to back on one shared connection, with no
    /// other caller's request between them.
    ///
    /// - Returns: One reply per command, in order; error replies are `.error` values.
    /// - Throws: ``RedisError`` when the connection fails, or `CancellationError`.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RedisReply] {
        guard let first = commands.first else { return [] }
        let run = { () async throws -> [RedisReply] in
            if let cluster = self.cluster { return try await self.clusterPipeline(commands, on: cluster) }
            return try await self.pipeline(commands, on: try await self.serverPool(for: first))
        }
        guard telemetry.isEnabled else { return try await run() }
        return try await telemetry.command("PIPELINE", batchSize: commands.count, run)
    }

    /// Sends `commands` back to back on one of `pool`'s shared connections;
    /// retried once when every command is read-only.
    func pipeline(_ commands: [[RedisArgument]], on pool: ServerPool) async throws -> [RedisReply] {
        do {
            return try await reportingFailures(at: pool.address) {
                try await pool.onShared { connection in try await connection.pipeline(commands) }
            }
        } catch let error as RedisError {
            let readOnly = commands.allSatisfy { $0.first?.isCommand(in: Self.retryableCommands) ?? false }
            guard let next = try await retryPool(after: error, on: pool, command: commands[0], readOnly: readOnly) else { throw error }
            return try await reportingFailures(at: next.address) { try await next.onShared { connection in try await connection.pipeline(commands) } }
        }
    }

    /// Runs `body` with a connection of its own, for `MULTI`/`EXEC`, `WATCH`
    /// or blocking commands; the connection goes back to the pool afterwards
    /// (or is closed, if its session changed or it broke). Not retried.
    ///
    /// ```swift
    /// let replies = try await client.withConnection { connection in
    ///     try await connection.transaction([["INCR", "a"], ["INCR", "b"]])
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - key: In a cluster, required: see the synchronous `withConnection(routedBy:_:)`.
    ///   - body: Runs with the connection, which no other caller uses meanwhile.
    public func withConnection<R>(routedBy key: String? = nil, _ body: sending (RedisDedicatedConnection) async throws -> R) async throws -> R {
        let pool: ServerPool
        if let cluster, let slot = try dedicatedSlot(routedBy: key) {
            pool = try await cluster.node(for: slot).pool
        } else {
            pool = try await serverPool(for: [])
        }
        return try await pool.withDedicated { connection in
            try await body(RedisDedicatedConnection(connection: connection))
        }
    }

    /// The executor of the engine's event loop: run a task's code on the
    /// loop's own thread, where the replies arrive.
    ///
    /// ```swift
    /// let user = try await withTaskExecutorPreference(cache.rawClient.eventLoopExecutor) {
    ///     try await cache.get("user:42")
    /// }
    /// ```
    ///
    /// By default an async call costs two thread hand-offs: the request to
    /// the loop, the reply back to a thread of Swift's pool, which on an idle
    /// service is asleep and must be woken. A task that prefers this
    /// executor sends from the loop's thread and is resumed there, so a call
    /// from one task runs at about the speed of the blocking call (see the
    /// Performance article). Worth it at low concurrency; at high
    /// concurrency the default spreads the tasks' own work over all cores.
    ///
    /// Keep such code short and non-blocking: while it runs, the loop reads
    /// and writes no socket, for this client or any other in the process. A
    /// blocking call there (the synchronous API, `Thread.sleep`) stalls them all.
    /// Machines with eight or more cores run more than one loop; this is the
    /// first, and calls on connections of the others cost one hand-off.
    public var eventLoopExecutor: any TaskExecutor { EventLoop.shared[0] }

    /// Sends `PING` and checks for `PONG`.
    public func ping() async throws {
        let reply = try await send("PING")
        guard reply.string == "PONG" else {
            throw RedisError(.protocolError, "PING returned \(reply.kindName) instead of PONG")
        }
    }

    /// Closes every connection once its requests in flight are answered,
    /// then proves the server is back with a `PING` on a new one.
    public func reconnect() async throws {
        for server in router.servers { await server.drain() }
        logger.info("redis connections dropped for reconnect", metadata: ["redis.url": "\(configuration)"])
        try await ping()
    }

    /// Closes the client gracefully: new calls fail with
    /// ``RedisError/Code/closed``, calls in flight get their replies, then
    /// every connection closes. The synchronous ``close()`` closes at once.
    public func shutdown() async {
        router.close()
        for server in router.servers { await server.close(graceful: true) }
    }

    /// The commands that block the connection until data arrives or a
    /// timeout passes; the async API runs them on dedicated connections.
    public static let blockingCommands: Set<String> = [
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
    ]

    /// `true` for ``blockingCommands`` and `XREAD`/`XREADGROUP` with `BLOCK`.
    static func isBlocking(_ arguments: [RedisArgument]) -> Bool {
        guard let name = arguments.first, name.byteCount >= 4, name.byteCount <= 10 else { return false }
        // Every such name starts with B, W or X: the other calls (the hot
        // path) pay one byte compare, not a set lookup.
        let first = name.withBytes { $0[0] | 0x20 }
        guard first == UInt8(ascii: "b") || first == UInt8(ascii: "w") || first == UInt8(ascii: "x") else { return false }
        if name.isCommand(in: blockingCommands) { return true }
        guard name.isCommand(in: ["XREAD", "XREADGROUP"]) else { return false }
        return arguments.dropFirst().contains { $0.isCommand(in: ["BLOCK"]) }
    }
}

/// A connection one caller holds, inside `RedisClient/withConnection(_:)-(((RedisDedicatedConnection)async throws->R))`:
/// for transactions, `WATCH` and blocking commands. Use it only inside the
/// closure it was given to.
public struct RedisDedicatedConnection {
    let connection: EventLoopConnection

    /// Sends one command and returns its reply; a top-level error reply is thrown.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RedisReply {
        try await connection.send(arguments).throwingServerError()
    }

    /// Sends one command and returns its reply (variadic form).
    @discardableResult
    public func send(_ arguments: RedisArgument...) async throws -> RedisReply {
        try await send(arguments)
    }

    /// Sends every command back to back; error replies are `.error` values.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RedisReply] {
        try await connection.pipeline(commands)
    }

    /// Runs `commands` atomically: `MULTI`, the commands, `EXEC`, in one write.
    ///
    /// - Returns: `EXEC`'s replies, one per command (error replies as
    ///   `.error`), or `nil` when a `WATCH`ed key changed and nothing ran.
    /// - Throws: ``RedisError/Code/server`` when the server refused a
    ///   command while queueing (`EXECABORT`), or a connection error.
    public func transaction(_ commands: [[RedisArgument]]) async throws -> [RedisReply]? {
        try RedisReply.transactionResult(await connection.pipeline([["MULTI"]] + commands + [["EXEC"]]))
    }
}
