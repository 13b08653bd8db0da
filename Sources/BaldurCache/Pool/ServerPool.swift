import DequeModule
import Dispatch
import Logging
import Synchronization

/// Every connection a client holds to one server, for both APIs: one
/// budget, one queue of waiters, one connect back-off, one close.
///
/// Connections come in three uses:
/// - **Blocking**: a synchronous call holds one for its run and does its
///   own I/O on its thread (``RedisConnection``). Reused last-in first-out,
///   so that the warmest connection serves the next caller.
/// - **Dedicated**: an async caller holds one, driven by the event loop, for
///   what must not share a stream: blocking commands (lock waits, `BLPOP`),
///   `MULTI`/`EXEC`, `WATCH` (``EventLoopConnection``).
/// - **Shared**: ``RedisConfiguration/Pool/pipelinedConnections`` event-loop
///   connections that pipeline every task's requests, used round-robin,
///   opened on first use and replaced once they fail; and subscriptions.
///
/// Blocking and dedicated connections, held or idle, count against one
/// budget, ``RedisConfiguration/Pool/maxConnections``, whichever API holds
/// them. A caller that finds it spent waits its turn in one queue, threads
/// and tasks alike (a task suspends, holding no thread), up to `pool.timeout`,
/// then gets ``RedisError/Code/poolExhausted``. When the budget is spent and
/// an idle connection of the other use waits, that one is closed to make room.
///
/// - An idle blocking connection the server closed (its socket reads EOF)
///   is discarded before it is handed out, so a server restart costs no
///   failed command; one unused for longer than `healthCheckInterval` is
///   checked with `PING` first.
/// - A connection that failed is closed (reset, see
///   ``RedisConnection/close(resetting:)``), never reused. So is one whose
///   session its holder left changed (an open `MULTI`, another database,
///   unread replies): see ``RedisConnection/isReusable``.
/// - Failed connects, by either API, back off as ``ConnectBackoff`` says:
///   from the second failure in a row, new connects wait 25 ms doubling to
///   1 s, and callers meanwhile get the last connect error at once. The
///   first connection that works resets it.
/// - A failover retires the pool (``close(because:)``): every call in flight
///   and every connect under way ends at once, on either API.
final class ServerPool: Sendable {
    let address: RedisServerAddress
    private let configuration: RedisConfiguration
    private let logger: Logger
    private let state: PlainMutex<State>
    /// Mirrors `State.closed`, so that a blocking checkout on a closed pool fails without the lock.
    private let isClosed = Atomic<Bool>(false)
    /// Gauges of idle and used held connections and of waiting callers, when metrics are on.
    private let meters: Telemetry.PoolMeters?
    /// When a new connect may be tried after failed ones. Taken after
    /// `state`'s lock when both are held, never before it.
    private let connects = SharedConnectBackoff()

    /// A blocking connection and the pool generation it was opened in.
    struct PooledConnection: Sendable {
        let connection: RedisConnection
        let generation: Int
    }

    private enum Shared: Sendable {
        case empty
        case connecting([UnsafeContinuation<EventLoopConnection, any Error>])
        case ready(EventLoopConnection)
    }

    /// What a caller that waited for the budget is given.
    private enum Grant: Sendable {
        case blocking(PooledConnection)
        case dedicated(EventLoopConnection)
        /// A place in the budget, already counted: the caller connects.
        case place
        case failed(RedisError)
    }

    /// A caller waiting for a place in the budget, in arrival order.
    private enum Waiter: Sendable {
        case thread(ThreadWaiter)
        case task(id: UInt64, UnsafeContinuation<Grant, any Error>)

        var isThread: Bool { if case .thread = self { true } else { false } }
    }

    /// Ends `waiter`'s wait with `grant` (lock not held).
    private func hand(_ grant: Grant, to waiter: Waiter) {
        switch waiter {
        case .thread(let parked):
            state.withLock { _ in parked.grant = grant }
            parked.wakeup.signal()
        case .task(_, let continuation):
            if case .failed(let error) = grant { continuation.resume(throwing: error) } else { continuation.resume(returning: grant) }
        }
    }

    /// A blocking caller parked until a place frees up.
    private final class ThreadWaiter: @unchecked Sendable {
        // Why @unchecked Sendable is safe: `grant` is written under the
        // pool's lock before `wakeup` is signalled, and read under the
        // pool's lock after the wait.
        let wakeup = DispatchSemaphore(value: 0)
        var grant: Grant?
    }

    private struct State: Sendable {
        /// Blocking and dedicated connections: open or being opened, held or idle.
        var held = 0
        var idleBlocking: [PooledConnection] = []
        var idleDedicated: [EventLoopConnection] = []
        var waiters = Deque<Waiter>()
        var nextWaiter: UInt64 = 0
        var shared: [Shared]
        var nextShared = 0
        /// Open subscriptions, closed with the pool.
        var subscriptions: [UInt64: EventLoopConnection] = [:]
        var nextSubscription: UInt64 = 0
        /// Blocking connections open now, idle or held, by their abort
        /// handles: what ``close(because:)`` reaches in a holder's call.
        var blockingOpen: [ObjectIdentifier: ConnectionAbort] = [:]
        /// Connects under way, by their abort handles.
        var connecting: [ObjectIdentifier: ConnectionAbort] = [:]
        var closed = false
        /// Bumped by ``drain()``: connections taken before it (blocking or dedicated) are closed on return.
        var generation = 0
    }

    init(address: RedisServerAddress, configuration: RedisConfiguration, logger: Logger, telemetry: Telemetry) {
        self.address = address
        self.configuration = configuration
        self.logger = logger
        self.meters = telemetry.poolMeters()
        state = PlainMutex(State(shared: Array(repeating: .empty, count: configuration.pool.pipelinedConnections)))
    }

    deinit {
        close()
    }

    /// Connections open now: held and idle ones (counted from their
    /// connect on), and the open shared ones.
    var openConnections: Int {
        state.withLock { state in
            state.held + state.shared.filter { if case .ready(let connection) = $0 { connection.isOpen } else { false } }.count
        }
    }

    // MARK: - The budget

    /// What ``take(_:blocking:enqueue:)`` found.
    private enum Take {
        case blocking(PooledConnection)
        case dedicated(EventLoopConnection)
        /// A place is counted for the caller, who connects; `closing` is an
        /// idle connection of the other use that gave its place up.
        case connect(closing: Closing?, generation: Int)
        /// The caller is queued (when it gave a waiter) or must queue.
        case wait
        case fail(RedisError)
    }

    /// An idle connection to close outside the lock.
    private enum Closing {
        case blocking(RedisConnection)
        case dedicated(EventLoopConnection)

        func close() {
            switch self {
            case .blocking(let connection): connection.close(resetting: true)
            case .dedicated(let connection): connection.closeSoon()
            }
        }
    }

    /// An idle connection for a caller of one use, or a place to connect
    /// one, or a turn in the queue (lock held). `enqueue` is queued when
    /// the caller must wait.
    private func take(_ state: inout State, blocking: Bool, enqueue: Waiter?) -> Take {
        if state.closed { return .fail(closedError) }
        if blocking {
            if let idle = state.idleBlocking.popLast() { return .blocking(idle) }
        } else {
            while let idle = state.idleDedicated.popLast() {
                if idle.isOpen { return .dedicated(idle) }
                state.held -= 1
            }
        }
        let otherIdle = blocking ? !state.idleDedicated.isEmpty : !state.idleBlocking.isEmpty
        guard state.held < configuration.pool.maxConnections || otherIdle else {
            if let enqueue { state.waiters.append(enqueue) }
            return .wait
        }
        if let refusal = connects.refusal() { return .fail(refusal) }
        var closing: Closing?
        if state.held >= configuration.pool.maxConnections {
            if blocking {
                closing = .dedicated(state.idleDedicated.removeFirst())
            } else {
                let idle = state.idleBlocking.removeFirst()
                state.blockingOpen[ObjectIdentifier(idle.connection.abortHandle)] = nil
                closing = .blocking(idle.connection)
            }
        } else {
            state.held += 1
        }
        return .connect(closing: closing, generation: state.generation)
    }

    /// A held connection's place is free: the first waiter gets it, to
    /// connect with; else the budget has one more (lock held).
    private static func freePlace(_ state: inout State) -> Waiter? {
        if !state.closed, let waiter = state.waiters.popFirst() { return waiter }
        state.held -= 1
        return nil
    }

    /// Sets the idle and used gauges (when metrics are on).
    private func reportConnections() {
        guard let meters else { return }
        let (idle, held) = state.withLock { ($0.idleBlocking.count + $0.idleDedicated.count, $0.held) }
        meters.idle.set(idle)
        meters.used.set(max(held - idle, 0))
    }

    private func exhaustedError() -> RedisError {
        RedisError(
            .poolExhausted,
            "all \(configuration.pool.maxConnections) connections to \(address) stayed busy for \(configuration.pool.timeout.readable) (pool.timeout)"
        )
    }

    // MARK: - Blocking connections

    /// Runs `body` with a blocking connection of its own and returns the
    /// connection to the pool afterwards (or closes it if it broke).
    func withConnection<R>(_ body: (RedisConnection) throws -> R) throws -> R {
        let pooled = try checkout()
        defer { checkin(pooled) }
        return try body(pooled.connection)
    }

    /// Takes a blocking connection for one caller; pair with ``checkin(_:)``.
    func checkout() throws(RedisError) -> PooledConnection {
        let pooled = try takeBlocking()
        // Counted process-wide so that replies are not spun for while many callers compete for the CPUs.
        ReplySpin.connectionsInUse.wrappingAdd(1, ordering: .relaxed)
        reportConnections()
        return pooled
    }

    private func takeBlocking() throws(RedisError) -> PooledConnection {
        if isClosed.load(ordering: .acquiring) { throw closedError }
        var deadline: DispatchTime?
        while true {
            var taken = state.withLock { take(&$0, blocking: true, enqueue: nil) }
            if case .wait = taken {
                let waitUntil = deadline ?? DispatchTime.now() + .nanoseconds(Int(configuration.pool.timeout.nanoseconds))
                deadline = waitUntil
                taken = try waitAsThread(until: waitUntil)
            }
            switch taken {
            case .blocking(let idle):
                if let usable = checked(idle) { return usable }
            case .connect(let closing, let generation):
                closing?.close()
                return try openBlocking(generation: generation)
            case .fail(let error):
                throw error
            case .dedicated, .wait:
                preconditionFailure("a blocking checkout was given \(taken)")
            }
        }
    }

    /// Queues the calling thread and parks it until a place or a
    /// connection is handed over, or `deadline` passes.
    private func waitAsThread(until deadline: DispatchTime) throws(RedisError) -> Take {
        let waiter = ThreadWaiter()
        let taken = state.withLock { take(&$0, blocking: true, enqueue: .thread(waiter)) }
        guard case .wait = taken else { return taken }
        meters?.waiting.increment()
        defer { meters?.waiting.decrement() }
        if waiter.wakeup.wait(timeout: deadline) == .timedOut {
            let gaveUp = state.withLock { state -> Bool in
                guard let index = state.waiters.firstIndex(where: { if case .thread(let queued) = $0 { queued === waiter } else { false } }) else {
                    return false
                }
                state.waiters.remove(at: index)
                return true
            }
            if gaveUp {
                logger.debug("redis pool exhausted", metadata: ["redis.address": "\(address)"])
                throw exhaustedError()
            }
            // Handed something just as the wait ended: it is signalled.
            waiter.wakeup.wait()
        }
        switch state.withLock({ _ in waiter.grant }) {
        case .blocking(let pooled): return .blocking(pooled)
        case .place: return .connect(closing: nil, generation: state.withLock { $0.generation })
        case .failed(let error): return .fail(error)
        case .dedicated, nil: preconditionFailure("a blocking waiter was given a dedicated connection")
        }
    }

    /// `idle` when it is fit to hand out; else it is discarded (its place
    /// freed) and `nil` returned.
    private func checked(_ idle: PooledConnection) -> PooledConnection? {
        if idle.connection.hasUnexpectedInput {
            // Closed by the server while idle (restart, CLIENT KILL, idle timeout).
            logger.debug("redis idle connection was closed by the server", metadata: ["redis.address": "\(address)"])
            discardBlocking(idle.connection)
            return nil
        }
        if ContinuousClock.now - idle.connection.lastUsed < configuration.pool.healthCheckInterval {
            return idle
        }
        do {
            try idle.connection.send(["PING"])
            return idle
        } catch {
            logger.debug("redis idle connection failed its health check", metadata: ["redis.address": "\(address)", "error": "\(error)"])
            discardBlocking(idle.connection)
            return nil
        }
    }

    /// Returns a connection taken by ``checkout()``: kept for the next
    /// caller when it is reusable, closed otherwise.
    func checkin(_ pooled: PooledConnection) {
        ReplySpin.connectionsInUse.wrappingSubtract(1, ordering: .relaxed)
        let connection = pooled.connection
        let reusable = connection.isReusable
        if reusable {
            connects.reset()
        } else if connection.refusedByServer {
            _ = connects.failed(RedisError(.connectionRefused, "\(address) refused the connection (\(RedisConnection.tooManyClients))"))
        }
        let (keep, handoff) = state.withLock { state -> (Bool, (Waiter, Grant)?) in
            guard !state.closed, reusable, pooled.generation == state.generation else {
                state.blockingOpen[ObjectIdentifier(connection.abortHandle)] = nil
                return (false, Self.freePlace(&state).map { ($0, .place) })
            }
            guard let first = state.waiters.first else {
                state.idleBlocking.append(pooled)
                return (true, nil)
            }
            state.waiters.removeFirst()
            if first.isThread { return (true, (first, .blocking(pooled))) }
            // A task waits: this connection's place becomes its dedicated one.
            state.blockingOpen[ObjectIdentifier(connection.abortHandle)] = nil
            return (false, (first, .place))
        }
        if !keep {
            if connection.isOpen && !reusable {
                logger.debug("redis connection discarded: its session was left changed or replies were left unread", metadata: ["redis.address": "\(address)"])
            }
            connection.close(resetting: true)
        }
        if let (waiter, grant) = handoff { hand(grant, to: waiter) }
        reportConnections()
    }

    /// Closes an idle blocking connection taken from the pool and frees its place.
    private func discardBlocking(_ connection: RedisConnection) {
        connection.close(resetting: true)
        let waiter = state.withLock { state in
            state.blockingOpen[ObjectIdentifier(connection.abortHandle)] = nil
            return Self.freePlace(&state)
        }
        if let waiter { hand(.place, to: waiter) }
    }

    private func openBlocking(generation: Int) throws(RedisError) -> PooledConnection {
        let handle = ConnectionAbort()
        let key = ObjectIdentifier(handle)
        // Registered before the connect, so that close(because:) reaches it.
        let registered = state.withLock { state in
            if !state.closed { state.connecting[key] = handle }
            return !state.closed
        }
        guard registered else {
            placeLost()
            throw closedError
        }
        do {
            let connection = try RedisConnection(address: address, configuration: configuration, abortHandle: handle)
            state.withLock { state in
                state.connecting[key] = nil
                state.blockingOpen[key] = handle
            }
            logger.debug("redis connection opened", metadata: ["redis.address": "\(address)"])
            return PooledConnection(connection: connection, generation: generation)
        } catch {
            state.withLock { _ = $0.connecting.removeValue(forKey: key) }
            placeLost()
            noteConnectFailure(error)
            throw error
        }
    }

    /// A place counted for a connect that did not happen is free again.
    private func placeLost() {
        if let waiter = state.withLock({ Self.freePlace(&$0) }) { hand(.place, to: waiter) }
    }

    /// Closes the idle connections of both APIs and the shared ones, so that
    /// the next calls open new ones, and marks those in use to be closed
    /// when they come back: the synchronous `reconnect()`. The shared
    /// connections close once their requests in flight are answered; this
    /// does not wait for it (the async `drain()` does).
    func drain() {
        for connection in drainWithoutWaiting() { connection.closeWhenAnswered() }
    }

    /// Closes the idle connections of both APIs and the shared ones, so that
    /// the next calls open new ones; requests in flight finish first.
    func drain() async {
        for connection in drainWithoutWaiting() { await connection.close(graceful: true) }
    }

    /// ``drain()``'s bookkeeping: closes the idle blocking connections,
    /// starts a new generation, and returns the event-loop connections
    /// taken out of the pool for the caller to close.
    private func drainWithoutWaiting() -> [EventLoopConnection] {
        let (onLoop, idle, waiters) = state.withLock { state -> ([EventLoopConnection], [PooledConnection], [Waiter]) in
            state.generation += 1
            connects.reset()
            let onLoop = Self.takeIdleOnLoop(&state)
            let idle = state.idleBlocking
            state.idleBlocking.removeAll()
            for pooled in idle { state.blockingOpen[ObjectIdentifier(pooled.connection.abortHandle)] = nil }
            // Their places go to waiters first.
            var waiters: [Waiter] = []
            for _ in idle { if let waiter = Self.freePlace(&state) { waiters.append(waiter) } }
            return (onLoop, idle, waiters)
        }
        for pooled in idle { pooled.connection.close(resetting: true) }
        for waiter in waiters { hand(.place, to: waiter) }
        reportConnections()
        return onLoop
    }

    // MARK: - Shared connections

    /// The next shared connection when it is open, without suspending; `nil`
    /// when it must be (re)opened (``shared()`` does that).
    @inline(__always)
    func readyShared() throws(RedisError) -> EventLoopConnection? {
        try state.withLock { state throws(RedisError) -> EventLoopConnection? in
            if state.closed { throw closedError }
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
            do { return try await body(connection) } catch is UnsentRequest { discardShared(connection) }
        }
        return try await onFreshShared(body)
    }

    private func onFreshShared<R>(_ body: (EventLoopConnection) async throws -> R) async throws -> R {
        var reason = RedisError(.closed, "the connections to \(address) kept closing")
        for _ in 0...configuration.pool.pipelinedConnections {
            let connection = try await shared()
            do { return try await body(connection) } catch let unsent as UnsentRequest {
                reason = unsent.reason
                discardShared(connection)
            }
        }
        throw reason
    }

    /// Empties the shared slot holding `connection`, which refused a request
    /// because it failed: the next caller of that slot opens a new one.
    private func discardShared(_ connection: EventLoopConnection) {
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
            if state.closed { return .fail(closedError) }
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
                let connection = try await openOnLoop(dedicated: false)
                let (waiters, closed) = state.withLock { state -> ([UnsafeContinuation<EventLoopConnection, any Error>], Bool) in
                    connects.reset()
                    defer { state.shared[index] = .ready(connection) }
                    if case .connecting(let waiters) = state.shared[index] { return (waiters, state.closed) }
                    return ([], state.closed)
                }
                if closed { await connection.close(graceful: false) }
                for waiter in waiters { waiter.resume(returning: connection) }
                logger.debug("redis pipelined connection opened", metadata: ["redis.address": "\(address)"])
                return connection
            } catch {
                let waiters = state.withLock { state -> [UnsafeContinuation<EventLoopConnection, any Error>] in
                    defer { state.shared[index] = .empty }
                    if case .connecting(let waiters) = state.shared[index] { return waiters }
                    return []
                }
                noteConnectFailure(error)
                for waiter in waiters { waiter.resume(throwing: error) }
                throw error
            }
        }
    }

    // MARK: - Dedicated connections

    /// Runs `body` with a dedicated connection; the connection is kept for
    /// the next holder when it comes back open, idle and with its session
    /// as configured, and closed otherwise.
    func withDedicated<R>(_ body: (EventLoopConnection) async throws -> R) async throws -> R {
        // Read before the checkout: a drain between the two then closes the
        // connection on return, never keeps one from before it.
        let generation = state.withLock { $0.generation }
        let connection = try await checkoutDedicated()
        do {
            let result = try await body(connection)
            checkinDedicated(connection, generation: generation)
            return result
        } catch {
            checkinDedicated(connection, generation: generation)
            throw error
        }
    }

    private func checkoutDedicated() async throws -> EventLoopConnection {
        var taken = state.withLock { take(&$0, blocking: false, enqueue: nil) }
        if case .wait = taken {
            switch try await waitAsTask() {
            case .dedicated(let connection): return connection
            case .place: taken = .connect(closing: nil, generation: 0)
            case .failed(let error): throw error
            case .blocking: preconditionFailure("a dedicated checkout was given a blocking connection")
            }
        }
        switch taken {
        case .dedicated(let connection):
            return connection
        case .connect(let closing, _):
            closing?.close()
            do {
                let connection = try await openOnLoop(dedicated: true)
                connects.reset()
                return connection
            } catch {
                placeLost()
                noteConnectFailure(error)
                throw error
            }
        case .fail(let error):
            throw error
        case .blocking, .wait:
            preconditionFailure("a dedicated checkout was given \(taken)")
        }
    }

    /// Queues the calling task until a place or a connection is handed
    /// over, `pool.timeout` passes, or the task is cancelled (at once).
    private func waitAsTask() async throws -> Grant {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timeout = configuration.pool.timeout
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            self?.endTaskWait(id, with: self?.exhaustedError())
        }
        defer { timer.cancel() }
        meters?.waiting.increment()
        defer { meters?.waiting.decrement() }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                let taken = state.withLock { state -> Take? in
                    // Checked under the lock the handler takes: a cancellation either comes
                    // before this (and is seen here) or finds the waiter queued.
                    if Task.isCancelled { return nil }
                    return take(&state, blocking: false, enqueue: .task(id: id, continuation))
                }
                switch taken {
                case nil: continuation.resume(throwing: CancellationError())
                case .wait?: break
                case .dedicated(let connection)?: continuation.resume(returning: .dedicated(connection))
                case .connect(let closing, _)?:
                    closing?.close()
                    continuation.resume(returning: .place)
                case .fail(let error)?: continuation.resume(throwing: error)
                case .blocking?: preconditionFailure("a dedicated checkout was given a blocking connection")
                }
            }
        } onCancel: { [weak self] in
            self?.endTaskWait(id, with: nil)
        }
    }

    /// Ends a task's wait with `error` (`nil`: `CancellationError`), unless
    /// it was handed something first.
    private func endTaskWait(_ id: UInt64, with error: RedisError?) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { if case .task(id, _) = $0 { true } else { false } }) else { return nil }
            return state.waiters.remove(at: index)
        }
        guard case .task(_, let continuation)? = waiter else { return }
        continuation.resume(throwing: error ?? CancellationError())
    }

    private func checkinDedicated(_ connection: EventLoopConnection, generation: Int) {
        let reusable = connection.isReusable
        let (keep, handoff) = state.withLock { state -> (Bool, (Waiter, Grant)?) in
            guard reusable, !state.closed, generation == state.generation else { return (false, Self.freePlace(&state).map { ($0, .place) }) }
            guard let first = state.waiters.popFirst() else {
                state.idleDedicated.append(connection)
                return (true, nil)
            }
            // A thread waits: this connection's place becomes its blocking one.
            return first.isThread ? (false, (first, .place)) : (true, (first, .dedicated(connection)))
        }
        if !keep { connection.closeSoon() }
        if let (waiter, grant) = handoff { hand(grant, to: waiter) }
    }

    // MARK: - Subscriptions

    /// Opens a connection of its own for a subscription: every reply goes
    /// to `onPush`; `onClose` runs once when it closes. The pool closes it
    /// when the pool closes.
    func openSubscription(
        onPush: @escaping @Sendable (RedisReply) -> Void, onClose: @escaping @Sendable (RedisError) -> Void
    ) async throws -> EventLoopConnection {
        let token = try state.withLock { state throws(RedisError) -> UInt64 in
            if state.closed { throw closedError }
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
            throw closedError
        }
        return connection
    }

    // MARK: - Connects

    /// Opens an event-loop connection that ``close(because:)`` can give up
    /// while it is being made.
    private func openOnLoop(dedicated: Bool) async throws -> EventLoopConnection {
        let handle = ConnectionAbort()
        let key = ObjectIdentifier(handle)
        guard state.withLock({ state in
            if !state.closed { state.connecting[key] = handle }
            return !state.closed
        }) else { throw closedError }
        defer { state.withLock { _ = $0.connecting.removeValue(forKey: key) } }
        return try await Connector.open(address, configuration: configuration, dedicated: dedicated, abortHandle: handle)
    }

    /// Counts a failed connect, and says so: a warning once per outage (the
    /// second failure in a row starts the back-off), else at debug level.
    private func noteConnectFailure(_ error: any Error) {
        guard let error = error as? RedisError else { return }
        if connects.failed(error) {
            logger.warning("redis connects failing; backing off between attempts", metadata: ["redis.address": "\(address)", "error": "\(error.code)"])
        } else {
            logger.debug("redis connect failed", metadata: ["redis.address": "\(address)", "error": "\(error)"])
        }
    }

    // MARK: - Closing

    /// Everything ``close(because:)`` and ``close(graceful:)`` end.
    private struct Closed {
        var blocking: [RedisConnection] = []
        var onLoop: [EventLoopConnection] = []
        var waiters: Deque<Waiter> = []
        var aborts: [ConnectionAbort] = []
    }

    /// Marks the pool closed and takes what it holds idle (lock held).
    private func takeAllForClose(abortingCalls: Bool) -> Closed {
        isClosed.store(true, ordering: .releasing)
        return state.withLock { state in
            state.closed = true
            var closed = Closed()
            closed.blocking = state.idleBlocking.map(\.connection)
            for connection in closed.blocking { state.blockingOpen[ObjectIdentifier(connection.abortHandle)] = nil }
            if abortingCalls { closed.aborts = Array(state.blockingOpen.values) + Array(state.connecting.values) }
            closed.onLoop = Self.takeIdleOnLoop(&state) + state.subscriptions.values
            state.held -= state.idleBlocking.count
            state.idleBlocking.removeAll()
            state.subscriptions.removeAll()
            swap(&closed.waiters, &state.waiters)
            return closed
        }
    }

    /// Closes every connection not held, at once: calls in flight on the
    /// shared ones fail with ``RedisError/Code/closed``. Held connections
    /// close when they come back; later calls throw `closed`. Idempotent.
    ///
    /// - Parameter reason: For a server that must not be waited on any more
    ///   (a master a failover demoted): the calls in flight on every
    ///   connection, held ones too, fail at once saying so
    ///   (`connectionClosed`), and connects under way are given up (see
    ///   ``ConnectionAbort``).
    func close(because reason: String? = nil) {
        let closed = takeAllForClose(abortingCalls: reason != nil)
        for waiter in closed.waiters { hand(.failed(closedError), to: waiter) }
        let callError = reason.map { ConnectionAbort.callError(at: address, $0) }
        for connection in closed.onLoop { connection.closeSoon(failingCallsWith: callError) }
        for connection in closed.blocking { connection.close(resetting: true) }
        if let reason {
            for handle in closed.aborts { handle.abort(because: reason) }
        }
        reportConnections()
    }

    /// Closes every connection not held; held ones close when they come
    /// back. `graceful`: shared connections first answer what is in flight.
    func close(graceful: Bool) async {
        let closed = takeAllForClose(abortingCalls: false)
        for waiter in closed.waiters { hand(.failed(closedError), to: waiter) }
        for connection in closed.blocking { connection.close(resetting: true) }
        await withTaskGroup(of: Void.self) { group in
            for connection in closed.onLoop { group.addTask { await connection.close(graceful: graceful) } }
        }
        reportConnections()
    }

    /// Empties the idle dedicated connections and the shared slots (lock held).
    private static func takeIdleOnLoop(_ state: inout State) -> [EventLoopConnection] {
        var connections = state.idleDedicated
        state.held -= state.idleDedicated.count
        state.idleDedicated.removeAll()
        for (index, slot) in state.shared.enumerated() {
            if case .ready(let connection) = slot {
                connections.append(connection)
                state.shared[index] = .empty
            }
        }
        return connections
    }


    private var closedError: RedisError {
        RedisError(.closed, "the Redis client for \(address) was closed")
    }
}
