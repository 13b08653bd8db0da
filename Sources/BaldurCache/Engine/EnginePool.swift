import DequeModule
import Logging

/// The async API's connections to one server: a few shared connections
/// that pipeline every caller's requests, and dedicated ones, one holder at
/// a time, for what must not share a stream (blocking commands such as lock
/// waits and `BLPOP`, `MULTI`/`EXEC`, `WATCH`).
///
/// - Shared: ``RedisConfiguration/Pool/pipelinedConnections`` of them, used
///   round-robin, opened on first use and replaced once they fail.
/// - Dedicated: up to ``RedisConfiguration/Pool/maxConnections``; a caller that
///   finds them all held suspends (holding no thread) up to `pool.timeout`.
/// - Connects back off as ``ConnectBackoff`` says, the rule the blocking
///   pool follows: from the second failure in a row, new connects wait
///   25 ms doubling to 1 s, and callers meanwhile get the last error at once.
final class EnginePool: Sendable {
    let address: RedisServerAddress
    private let configuration: RedisConfiguration
    private let logger: Logger
    private let state: PlainMutex<State>

    private enum Shared: Sendable {
        case empty
        case connecting([UnsafeContinuation<EventLoopConnection, any Error>])
        case ready(EventLoopConnection)
    }

    private struct Waiter: Sendable {
        let id: UInt64
        let continuation: UnsafeContinuation<EventLoopConnection?, any Error>
    }

    private struct State: Sendable {
        var shared: [Shared]
        var nextShared = 0
        var idle: [EventLoopConnection] = []
        /// Dedicated connections open or being opened, held or idle.
        var dedicated = 0
        var waiters = Deque<Waiter>()
        var nextWaiter: UInt64 = 0
        /// Open subscriptions, closed with the pool.
        var subscriptions: [UInt64: EventLoopConnection] = [:]
        var nextSubscription: UInt64 = 0
        /// Connects under way, by their abort handles.
        var connecting: [ObjectIdentifier: ConnectionAbort] = [:]
        var closed = false
    }

    /// When a new connect may be tried after failed ones: shared with the
    /// server's ``ConnectionPool`` (see ``ServerPool``). Taken after `state`'s
    /// lock when both are held, never before it.
    private let connects: SharedConnectBackoff

    init(
        address: RedisServerAddress, configuration: RedisConfiguration, logger: Logger,
        connects: SharedConnectBackoff = SharedConnectBackoff()
    ) {
        self.address = address
        self.configuration = configuration
        self.logger = logger
        self.connects = connects
        state = PlainMutex(State(shared: Array(repeating: .empty, count: configuration.pool.pipelinedConnections)))
    }

    // MARK: - Shared connections

    /// The next shared connection when it is open, without suspending; `nil`
    /// when it must be (re)opened (``shared()`` does that).
    @inline(__always)
    func readyShared() throws(RedisError) -> EventLoopConnection? {
        try state.withLock { state throws(RedisError) -> EventLoopConnection? in
            if state.closed { throw Self.closedError(address) }
            let index = state.nextShared
            guard case .ready(let connection) = state.shared[index], connection.isOpen else { return nil }
            state.nextShared = index + 1 == state.shared.count ? 0 : index + 1
            return connection
        }
    }

    /// Runs `body` (one request) on a shared connection. A request the
    /// connection refused unsent (``UnsentRequest``: it had just failed, or
    /// was closing) runs on the next one, opened anew when it must be; after
    /// as many refusals as there are shared connections, plus one, it fails
    /// with the last refusal's reason. A connect failure on the way is thrown
    /// as it is.
    @inline(__always)
    func onShared<R>(_ body: (EventLoopConnection) async throws -> R) async throws -> R {
        if let connection = try readyShared() {
            do { return try await body(connection) } catch is UnsentRequest { discard(connection) }
        }
        return try await onFreshShared(body)
    }

    private func onFreshShared<R>(_ body: (EventLoopConnection) async throws -> R) async throws -> R {
        var reason = RedisError(.closed, "the connections to \(address) kept closing")
        for _ in 0...configuration.pool.pipelinedConnections {
            let connection = try await shared()
            do { return try await body(connection) } catch let unsent as UnsentRequest {
                reason = unsent.reason
                discard(connection)
            }
        }
        throw reason
    }

    /// Empties the shared slot holding `connection`, which refused a request
    /// because it failed: the next caller of that slot opens a new one.
    private func discard(_ connection: EventLoopConnection) {
        state.withLock { state in
            for (index, slot) in state.shared.enumerated() {
                if case .ready(let held) = slot, held === connection { state.shared[index] = .empty }
            }
        }
    }

    /// A shared connection, opened (or reopened) on demand.
    func shared() async throws -> EventLoopConnection {
        enum Next { case use(EventLoopConnection), wait(Int), connect(Int), fail(RedisError) }
        let next = state.withLock { state -> Next in
            if state.closed { return .fail(Self.closedError(address)) }
            let index = state.nextShared
            state.nextShared = index + 1 == state.shared.count ? 0 : index + 1
            switch state.shared[index] {
            case .ready(let connection) where connection.isOpen:
                return .use(connection)
            case .connecting:
                return .wait(index)
            case .ready, .empty:
                if let failure = connects.refusal() { return .fail(failure) }
                state.shared[index] = .connecting([])
                return .connect(index)
            }
        }
        switch next {
        case .use(let connection):
            return connection
        case .fail(let error):
            throw error
        case .wait(let index):
            return try await withUnsafeThrowingContinuation { continuation in
                let ready = state.withLock { state -> Result<EventLoopConnection, any Error>? in
                    switch state.shared[index] {
                    case .connecting(var waiters):
                        waiters.append(continuation)
                        state.shared[index] = .connecting(waiters)
                        return nil
                    case .ready(let connection):
                        return .success(connection)
                    case .empty:
                        return .failure(connects.refusal() ?? RedisError(.connectionClosed, "the connection to \(address) failed"))
                    }
                }
                if let ready { continuation.resume(with: ready) }
            }
        case .connect(let index):
            do {
                let connection = try await open(dedicated: false)
                let waiters = state.withLock { state -> [UnsafeContinuation<EventLoopConnection, any Error>] in
                    connects.reset()
                    defer { state.shared[index] = .ready(connection) }
                    if case .connecting(let waiters) = state.shared[index] { return waiters }
                    return []
                }
                if state.withLock({ $0.closed }) { await connection.close(graceful: false) }
                for waiter in waiters { waiter.resume(returning: connection) }
                logger.debug("redis pipelined connection opened", metadata: ["redis.address": "\(address)"])
                return connection
            } catch {
                let (waiters, backingOff) = state.withLock { state -> ([UnsafeContinuation<EventLoopConnection, any Error>], Bool) in
                    let backingOff = failedToConnect(error)
                    defer { state.shared[index] = .empty }
                    if case .connecting(let waiters) = state.shared[index] { return (waiters, backingOff) }
                    return ([], backingOff)
                }
                for waiter in waiters { waiter.resume(throwing: error) }
                if backingOff { logBackingOff(error) }
                throw error
            }
        }
    }

    // MARK: - Dedicated connections

    /// Runs `body` with a connection of its own; the connection is kept for
    /// the next holder when it comes back open, idle and with its session
    /// as configured, and closed otherwise.
    func withDedicated<R>(_ body: (EventLoopConnection) async throws -> R) async throws -> R {
        let connection = try await checkoutDedicated()
        do {
            let result = try await body(connection)
            checkin(connection)
            return result
        } catch {
            checkin(connection)
            throw error
        }
    }

    private func checkoutDedicated() async throws -> EventLoopConnection {
        enum Next { case use(EventLoopConnection), connect, wait, fail(RedisError) }
        let next = state.withLock { state -> Next in
            if state.closed { return .fail(Self.closedError(address)) }
            while let connection = state.idle.popLast() {
                if connection.isOpen { return .use(connection) }
                state.dedicated -= 1
            }
            guard state.dedicated < configuration.pool.maxConnections else { return .wait }
            if let failure = connects.refusal() { return .fail(failure) }
            state.dedicated += 1
            return .connect
        }
        switch next {
        case .use(let connection): return connection
        case .fail(let error): throw error
        case .connect: return try await connectDedicated()
        case .wait:
            // nil: the caller was handed a slot to connect with.
            if let connection = try await waitForDedicated() { return connection }
            return try await connectDedicated()
        }
    }

    private func connectDedicated() async throws -> EventLoopConnection {
        do {
            let connection = try await open(dedicated: true)
            connects.reset()
            return connection
        } catch {
            let backingOff = state.withLock { state in
                state.dedicated -= 1
                return failedToConnect(error)
            }
            if backingOff { logBackingOff(error) }
            throw error
        }
    }

    private func waitForDedicated() async throws -> EventLoopConnection? {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timeout = configuration.pool.timeout
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            self?.timeOutWaiter(id)
        }
        defer { timer.cancel() }
        // A cancelled task stops waiting at once (it waited out poolTimeout before).
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                let cancelled = state.withLock { state -> Bool in
                    // Checked under the lock the handler takes: a cancellation either comes
                    // before this (and is seen here) or finds the waiter queued.
                    if Task.isCancelled { return true }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return false
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: { [weak self] in
            self?.cancelWaiter(id)
        }
    }

    /// Ends a waiter's wait with `CancellationError`, unless a connection was handed to it first.
    private func cancelWaiter(_ id: UInt64) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(throwing: CancellationError())
    }

    private func timeOutWaiter(_ id: UInt64) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        waiter?.continuation.resume(throwing: RedisError(
            .poolExhausted,
            "all \(configuration.pool.maxConnections) dedicated connections to \(address) stayed busy for \(configuration.pool.timeout.readable) (pool.timeout)"
        ))
    }

    private func checkin(_ connection: EventLoopConnection) {
        let reusable = connection.isReusable
        let (waiter, keep) = state.withLock { state -> (Waiter?, Bool) in
            if reusable && !state.closed {
                if let waiter = state.waiters.popFirst() { return (waiter, true) }
                state.idle.append(connection)
                return (nil, true)
            }
            // Not kept: its slot passes to a waiter, who connects anew.
            if !state.closed, let waiter = state.waiters.popFirst() { return (waiter, false) }
            state.dedicated -= 1
            return (nil, false)
        }
        if !keep { connection.closeSoon() }
        waiter?.continuation.resume(returning: keep ? connection : nil)
    }

    // MARK: - Subscriptions

    /// Opens a connection of its own for a subscription: every reply goes
    /// to `onPush`; `onClose` runs once when it closes. The pool closes it
    /// when the pool closes.
    func openSubscription(
        onPush: @escaping @Sendable (RedisReply) -> Void, onClose: @escaping @Sendable (RedisError) -> Void
    ) async throws -> EventLoopConnection {
        let token = try state.withLock { state throws(RedisError) -> UInt64 in
            if state.closed { throw Self.closedError(address) }
            defer { state.nextSubscription += 1 }
            return state.nextSubscription
        }
        let connection = try await Connector.open(address, configuration: configuration, dedicated: true, onPush: onPush) { [weak self] error in
            _ = self?.state.withLock { $0.subscriptions.removeValue(forKey: token) }
            onClose(error)
        }
        // A connection that closed already (its callback ran, or will find
        // nothing) is not registered: `isOpen` turns false before the callback.
        let closed = state.withLock { state in
            if !state.closed && connection.isOpen { state.subscriptions[token] = connection }
            return state.closed
        }
        if closed {
            await connection.close(graceful: false)
            throw Self.closedError(address)
        }
        return connection
    }

    // MARK: - Closing

    deinit {
        closeNow()
    }

    /// Closes every connection not held; held dedicated ones close when they
    /// come back. `graceful`: shared connections first answer what is in flight.
    func close(graceful: Bool) async {
        let (connections, waiters, _) = takeAllForClose()
        for waiter in waiters { waiter.continuation.resume(throwing: Self.closedError(address)) }
        await withTaskGroup(of: Void.self) { group in
            for connection in connections { group.addTask { await connection.close(graceful: graceful) } }
        }
    }

    /// Closes every connection not held, at once, without waiting: calls in
    /// flight on them fail with ``RedisError/Code/closed``.
    ///
    /// - Parameter reason: Why, for a server that must not be waited on any
    ///   more (a master a failover demoted): calls in flight fail saying so
    ///   (`connectionClosed`), and connects under way are given up (see
    ///   ``ConnectionAbort``).
    func closeNow(because reason: String? = nil) {
        let (connections, waiters, connecting) = takeAllForClose()
        for waiter in waiters { waiter.continuation.resume(throwing: Self.closedError(address)) }
        let callError = reason.map { ConnectionAbort.callError(at: address, $0) }
        for connection in connections { connection.closeSoon(failingCallsWith: callError) }
        if let reason {
            for handle in connecting { handle.abort(because: reason) }
        }
    }

    /// Opens a connection that ``closeNow(because:)`` can give up while it
    /// is being made.
    private func open(dedicated: Bool) async throws -> EventLoopConnection {
        let handle = ConnectionAbort()
        let key = ObjectIdentifier(handle)
        guard state.withLock({ state in
            if !state.closed { state.connecting[key] = handle }
            return !state.closed
        }) else { throw Self.closedError(address) }
        defer { state.withLock { _ = $0.connecting.removeValue(forKey: key) } }
        return try await Connector.open(address, configuration: configuration, dedicated: dedicated, abortHandle: handle)
    }

    private func takeAllForClose() -> ([EventLoopConnection], Deque<Waiter>, [ConnectionAbort]) {
        state.withLock { state -> ([EventLoopConnection], Deque<Waiter>, [ConnectionAbort]) in
            state.closed = true
            let connections = Self.takeIdleAndShared(&state) + state.subscriptions.values
            state.subscriptions.removeAll()
            defer { state.waiters.removeAll() }
            return (connections, state.waiters, Array(state.connecting.values))
        }
    }

    /// Empties the idle dedicated connections and the shared slots (lock held).
    private static func takeIdleAndShared(_ state: inout State) -> [EventLoopConnection] {
        var connections = state.idle
        state.dedicated -= state.idle.count
        state.idle.removeAll()
        for (index, slot) in state.shared.enumerated() {
            if case .ready(let connection) = slot {
                connections.append(connection)
                state.shared[index] = .empty
            }
        }
        return connections
    }

    /// Closes the shared and idle connections so that the next calls open
    /// new ones; requests in flight finish first.
    func drain() async {
        let connections = state.withLock { state -> [EventLoopConnection] in
            connects.reset()
            return Self.takeIdleAndShared(&state)
        }
        for connection in connections { await connection.close(graceful: true) }
    }

    /// Connections open now (shared and dedicated).
    var openConnections: Int {
        state.withLock { state in
            state.dedicated + state.shared.filter { if case .ready(let connection) = $0 { connection.isOpen } else { false } }.count
        }
    }

    // MARK: - Connect backoff (see ``ConnectBackoff``)

    /// Counts a failed connect; `true` when this one started the back-off.
    private func failedToConnect(_ error: any Error) -> Bool {
        guard let error = error as? RedisError else { return false }
        return connects.failed(error)
    }

    /// Once per outage, as the blocking pool says it.
    private func logBackingOff(_ error: any Error) {
        let code = (error as? RedisError)?.code.description ?? "\(error)"
        logger.warning("redis connects failing; backing off between attempts", metadata: ["redis.address": "\(address)", "error": "\(code)"])
    }

    private static func closedError(_ address: RedisServerAddress) -> RedisError {
        RedisError(.closed, "the client for \(address) is closed")
    }
}
