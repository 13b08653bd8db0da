import DequeModule
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A request a shared connection refused without writing anything: the
/// connection had failed or was closing when the request came (a caller
/// took it from the pool just before). It belongs on another connection
/// whatever the command is; ``ServerPool/onShared(_:)`` sends it there.
struct UnsentRequest: Error {
    /// Why the connection took nothing more.
    let reason: RedisError
}

/// One Redis connection driven by an ``EventLoop``: callers on any thread
/// queue requests, the loop writes them back to back and hands each reply to
/// the request it answers, in order (automatic pipelining).
///
/// A caller encodes its request straight into the connection's outgoing
/// buffer under the lock and suspends on a continuation; it holds no
/// thread while it waits. The loop swaps the buffer out and writes all of
/// it in one `send(2)` (a lone request on an idle plain connection is
/// written by its caller: see ``enqueue(_:_:replies:batch:timeout:_:)``), feeds what it reads to hiredis' reader (in
/// ``RedisConnection``, the one owner of the context) and resumes the
/// waiting continuations outside the lock.
///
/// - Cancellation: the caller resumes at once with `CancellationError`; its
///   request stays in the queue, and its reply is read and dropped.
/// - Deadlines: each request must be answered within `commandTimeout` of
///   being queued (write plus reply). A connection cannot skip a reply, so
///   one late reply fails the connection: the late request with
///   `readTimeout` (or `writeTimeout` when it was not fully written), every
///   other request in flight with `connectionClosed`, and the socket is
///   reset (`SO_LINGER {1,0}`) so nothing queued reaches the server later.
/// - Failures: an I/O error, EOF or bad reply fails exactly the requests in
///   flight on this connection, with that error.
///
/// The life cycle is ``ConnectionStateMachine``.
final class EventLoopConnection: EventLoopHandler, @unchecked Sendable {
    // Why @unchecked Sendable is safe: the fields under "Shared" are only
    // touched with `mutex` held; the fields under "Loop" only on the event
    // loop's thread (every EventLoopHandler method), after `init` finished
    // and the connection was registered (`writtenBytes` also by a caller
    // that writes its own request, under the lock, while the loop writes
    // nothing); `connection` (the hiredis context)
    // is the loop's alone from then on.

    let address: RedisServerAddress
    /// Requests may change the session (`MULTI`, `WATCH`, `SELECT`): a
    /// connection one caller holds at a time, never a shared one.
    let isDedicated: Bool
    private let loop: EventLoop
    private let timeout: Duration?
    /// ``timeout`` in nanoseconds, converted once: `Duration` arithmetic
    /// (128-bit) cost about 190 instructions a request.
    private let timeoutNanoseconds: UInt64?
    /// A blocking command's allowance beyond its own timeout (see ``BlockingCommand``).
    private let blockingMargin: Duration?
    /// Timeouts of 100 ms and more start from the coarse clock (cheaper; a
    /// few ms behind the fine one).
    private let coarseDeadlines: Bool
    private let connection: RedisConnection
    private let transport: Transport
    private let id: UInt64
    /// Cleared when the connection closes; read without the lock by pools.
    private let openFlag = Atomic<Bool>(true)
    /// Bumped (release) before continuations are resumed, read (acquire) by
    /// the resumed caller: the replies and errors built on the loop's thread
    /// are then ordered before the caller reads them in the memory model
    /// ThreadSanitizer checks. The runtime's resume already orders them, but
    /// through code TSan does not see.
    private let handoff = Atomic<UInt64>(0)

    // MARK: Shared (under `mutex`)

    // The mutex (shared fields) and the loop's thread (loop fields) already
    // make every access exclusive, so the runtime's dynamic exclusivity
    // checks on these fields only cost time (2% of a pipelined GET in perf).

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @exclusivity(unchecked) private var machine: ConnectionStateMachine
    @exclusivity(unchecked) private var pending = Deque<Slot>()
    /// The sequence number of `pending.first`.
    @exclusivity(unchecked) private var headSequence: UInt64 = 0
    @exclusivity(unchecked) private var outbound = OutputBuffer(capacity: 4096)
    /// Bytes ever queued, so a deadline can tell a request not yet written.
    @exclusivity(unchecked) private var queuedBytes: UInt64 = 0
    /// The loop has been asked to call ``serviceOnLoop()`` (or waits for `EPOLLOUT`).
    @exclusivity(unchecked) private var serviceScheduled = false
    /// The socket is to be closed on the loop.
    @exclusivity(unchecked) private var closeOnLoop = false
    @exclusivity(unchecked) private var closeWaiters: [CheckedContinuation<Void, Never>] = []
    @exclusivity(unchecked) private var socketClosed = false
    @exclusivity(unchecked) private(set) var session: SessionState

    // MARK: Loop (the loop's thread only)

    @exclusivity(unchecked) private var sending = OutputBuffer(capacity: 4096)
    @exclusivity(unchecked) private var sendingOffset = 0
    /// Bytes ever written. The loop's, except that a caller adds what it
    /// wrote itself (``writeDirectly()``), under the lock, while the loop
    /// has nothing to write; the loop reads it under the lock.
    @exclusivity(unchecked) private var writtenBytes: UInt64 = 0
    @exclusivity(unchecked) private var waitingForWritable = false
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
    /// Replies read and not yet matched, and the requests they complete,
    /// loop-thread only. Deques, so that each reply is moved out
    /// (`popFirst`), not copied and released again.
    @exclusivity(unchecked) private var arrived = Deque<RedisReply>()
    @exclusivity(unchecked) private var resumptions = Deque<(UnsafeContinuation<RedisReply, any Error>, Result<RedisReply, any Error>)>()
    private let onPush: (@Sendable (RedisReply) -> Void)?
    private let onClose: (@Sendable (RedisError) -> Void)?

    private static let retainedBufferCapacity = 64 * 1024

    /// One request waiting for its replies.
    private struct Slot {
        /// `nil` once resumed early (cancelled): the replies are read and dropped.
        var continuation: UnsafeContinuation<RedisReply, any Error>?
        /// Replies still to come (a pipeline's commands).
        var remaining: Int
        /// A pipeline's replies so far; `nil` for a single command.
        var collected: [RedisReply]?
        let deadline: UInt64
        /// `queuedBytes` once this request was queued.
        let endOffset: UInt64
    }

    /// Takes over `connection` (connected, authenticated, on its database)
    /// and registers it with `loop`.
    ///
    /// - Parameters:
    ///   - onPush: For a subscription: receives every reply that no request
    ///     waits for, on the loop's thread.
    ///   - onClose: Called once on the loop's thread when the connection closes.
    init(
        _ connection: RedisConnection, configuration: RedisConfiguration, loop: EventLoop, dedicated: Bool,
        onPush: (@Sendable (RedisReply) -> Void)? = nil, onClose: (@Sendable (RedisError) -> Void)? = nil
    ) throws(RedisError) {
        self.address = connection.address
        self.connection = connection
        self.loop = loop
        self.timeout = configuration.commandTimeout
        self.timeoutNanoseconds = configuration.commandTimeout.map { UInt64(clamping: $0.nanoseconds) }
        self.blockingMargin = configuration.blockingCommandTimeout ?? configuration.commandTimeout
        self.coarseDeadlines = (configuration.commandTimeout ?? .zero) >= .milliseconds(100)
        self.isDedicated = dedicated
        self.onPush = onPush
        self.onClose = onClose
        self.session = SessionState(configuredDatabase: configuration.database)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        id = loop.makeID()
        do {
            (transport, machine) = try connection.enterEventLoopMode()
            machine.pushMode = onPush != nil
        } catch {
            pthread_mutex_destroy(mutex)
            mutex.deallocate()
            readBuffer.deallocate()
            throw error
        }
        do {
            try loop.register(self, id: id, descriptor: transport.descriptor)
        } catch {
            connection.close(resetting: true)
            throw error
        }
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        readBuffer.deallocate()
    }

    @inline(__always)
    private func locked<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// `false` once closed, failed or draining.
    var isOpen: Bool { openFlag.load(ordering: .relaxed) }

    /// Open, nothing in flight, the session as configured: fit for the next
    /// holder of a dedicated connection.
    var isReusable: Bool {
        locked { machine.isOpen && pending.isEmpty && session.isClean }
    }

    // MARK: - Requests (any thread)

    /// Sends one command; returns its reply (an error reply as `.error`).
    @inline(__always)
    func send(_ arguments: [RedisArgument]) async throws -> RedisReply {
        try admit(arguments)
        // Blocking commands run on dedicated connections only: the shared ones pay no parsing.
        let replyTimeout = isDedicated
            ? BlockingCommand.replyTimeout(for: arguments, base: timeout, margin: blockingMargin).map { UInt64(clamping: $0.nanoseconds) }
            : timeoutNanoseconds
        return try await submit(replies: 1, batch: false, timeout: replyTimeout) { buffer in
            RESPEncoding.append(arguments, to: &buffer)
            if isDedicated { session.observe(arguments) }
        }
    }

    /// Sends `commands` back to back; returns their replies in order (error replies as `.error`).
    func pipeline(_ commands: [[RedisArgument]]) async throws -> [RedisReply] {
        for command in commands { try admit(command) }
        guard !commands.isEmpty else { return [] }
        let reply = try await submit(replies: commands.count, batch: true, timeout: timeoutNanoseconds) { buffer in
            for command in commands {
                RESPEncoding.append(command, to: &buffer)
                if isDedicated { session.observe(command) }
            }
        }
        return reply.array ?? []
    }

    /// Queues `arguments` with no reply awaited: a subscription's commands,
    /// whose confirmations arrive as pushes.
    func sendWithoutReply(_ arguments: [RedisArgument]) throws(RedisError) {
        let schedule = try locked { () throws(RedisError) -> Bool in
            guard machine.isOpen else { throw RedisError(.closed, "the connection to \(address) is closed") }
            RESPEncoding.append(arguments, to: &outbound)
            defer { serviceScheduled = true }
            return !serviceScheduled
        }
        if schedule { loop.schedule(self) }
    }

    /// Refuses what cannot go over this connection before anything is queued.
    private func admit(_ arguments: [RedisArgument]) throws(RedisError) {
        guard let first = arguments.first else { throw RedisError(.invalidArgument, "a command needs at least one argument") }
        guard let kind = SessionState.kind(of: arguments) else { return }
        let name = String(decoding: first.bytes, as: UTF8.self).uppercased()
        switch kind {
        case .push:
            throw RedisError(.invalidArgument, "\(name) turns a connection into a message stream; use RedisClient.subscribe(to:) for channels")
        case .session where SessionState.isClientReply(arguments):
            throw RedisError(.invalidArgument, "CLIENT REPLY makes the server withhold replies that are awaited; it cannot be used here")
        case .session where !isDedicated && SessionState.changesSession(arguments),
             .multi where !isDedicated, .exec where !isDedicated, .discard where !isDedicated,
             .watch where !isDedicated, .unwatch where !isDedicated, .select where !isDedicated:
            let hint = name == "AUTH" || name == "HELLO" ? " (to connect as another user, give the user and password in the client's URL)" : ""
            throw RedisError(.invalidArgument, "\(name) changes the connection's session, and this connection is shared by concurrent callers; run it inside RedisClient.withConnection { }\(hint)")
        default:
            return
        }
    }

    /// Queues a request and suspends until its replies arrive. Inlined into
    /// ``send(_:)`` and ``pipeline(_:)``: one async frame less per call.
    /// `timeout` is in nanoseconds (`nil`: none).
    @inline(__always)
    private func submit(replies: Int, batch: Bool, timeout: UInt64?, _ encode: (inout OutputBuffer) -> Void) async throws -> RedisReply {
        let ticket = Ticket()  // in the task's frame: no allocation
        defer { receive() }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                enqueue(ticket, continuation, replies: replies, batch: batch, timeout: timeout, encode)
            }
        } onCancel: {
            ticket.cancel(on: self)
        }
    }

    private func enqueue(
        _ ticket: borrowing Ticket, _ continuation: UnsafeContinuation<RedisReply, any Error>, replies: Int, batch: Bool, timeout: UInt64?,
        _ encode: (inout OutputBuffer) -> Void
    ) {
        let deadline = Monotonic.deadline(afterNanoseconds: timeout, from: coarseDeadlines ? Monotonic.coarseNow() : Monotonic.now())
        pthread_mutex_lock(mutex)
        if case .refuse(let error) = machine.submit(replies: replies) {
            pthread_mutex_unlock(mutex)
            // Nothing was written: on a shared connection the request belongs on another (see UnsentRequest).
            continuation.resume(throwing: isDedicated ? error : UnsentRequest(reason: error))
            return
        }
        let sequence = headSequence &+ UInt64(pending.count)
        let before = outbound.count
        encode(&outbound)
        queuedBytes &+= UInt64(outbound.count &- before)
        pending.append(Slot(continuation: continuation, remaining: replies, collected: batch ? [] : nil, deadline: deadline, endOffset: queuedBytes))
        // A lone request on an idle plain connection is written here, by
        // the caller: the loop then wakes once, for the reply, not also for
        // the write (one task: 28k calls/s instead of 16k). The loop writes
        // nothing while `serviceScheduled` is off, and the socket stays open
        // while the machine accepts requests, both under the lock held here.
        // Not over TLS: the loop may be in `SSL_read` on the same `SSL`.
        let wrote = !serviceScheduled && pending.count == 1 && transport.tls == nil && writeDirectly()
        let schedule = !wrote && !serviceScheduled
        if !wrote { serviceScheduled = true }
        pthread_mutex_unlock(mutex)
        // From here the loop may resume the continuation, even before this
        // closure returns (which the runtime allows).
        ticket.queued(sequence, on: self)
        if deadline != .max { loop.noteDeadline(deadline) }
        if schedule { loop.schedule(self) }
    }

    /// Writes `outbound` on the caller's thread (lock held, the loop not
    /// writing): `true` when all of it went out. Whatever the socket did not
    /// take stays queued for the loop, which also meets any error first.
    private func writeDirectly() -> Bool {
        let progress = outbound.withBytes { transport.write($0) }
        guard case .moved(let count) = progress else { return false }
        writtenBytes &+= UInt64(count)
        guard count == outbound.count else {
            outbound.removeFirst(count)
            return false
        }
        outbound.removeAll(keepingCapacityUpTo: Self.retainedBufferCapacity)
        return true
    }

    /// Where request `sequence` sits in `pending`, if it still waits (lock held).
    @inline(__always)
    private func index(of sequence: UInt64) -> Int? {
        guard sequence >= headSequence, sequence - headSequence < UInt64(pending.count) else { return nil }
        return Int(sequence - headSequence)
    }

    /// Resumes the request numbered `sequence` with `CancellationError`, if
    /// it still waits; its replies will be dropped.
    private func cancel(sequence: UInt64) {
        let continuation = locked { () -> UnsafeContinuation<RedisReply, any Error>? in
            guard let index = index(of: sequence) else { return nil }
            defer { pending[index].continuation = nil }
            return pending[index].continuation
        }
        publish()
        continuation?.resume(throwing: CancellationError())
    }

    /// Closes the connection: at once (requests in flight fail with
    /// `closed`), or `graceful`ly, once their replies arrived. Returns when
    /// the socket is closed.
    func close(graceful: Bool) async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            beginClose(graceful: graceful, waiter: waiter)
        }
    }

    /// Closes once the requests in flight are answered, without waiting for
    /// it (the synchronous ``RedisClient/reconnect()``).
    func closeWhenAnswered() {
        beginClose(graceful: true, waiter: nil)
    }

    /// Closes at once without waiting (a broken or unwanted connection, or
    /// the synchronous ``RedisClient/close()``). Calls in flight fail with
    /// `reason`, or ``RedisError/Code/closed`` without one.
    func closeSoon(failingCallsWith reason: RedisError? = nil) {
        beginClose(graceful: false, waiter: nil, reason: reason)
    }

    private func beginClose(graceful: Bool, waiter: CheckedContinuation<Void, Never>?, reason: RedisError? = nil) {
        var failed: [UnsafeContinuation<RedisReply, any Error>] = []
        let closedError = reason ?? RedisError(.closed, "the connection to \(address) was closed")
        let (schedule, alreadyClosed) = locked { () -> (Bool, Bool) in
            if socketClosed { return (false, true) }
            if let waiter { closeWaiters.append(waiter) }
            switch machine.closeRequested(graceful: graceful) {
            case .closeNow:
                openFlag.store(false, ordering: .relaxed)
                failed = pending.compactMap(\.continuation)
                headSequence &+= UInt64(pending.count)
                pending.removeAll()
                closeOnLoop = true
                // Always scheduled: a service already scheduled may be past
                // its check of `closeOnLoop` (mid-flush, or waiting for
                // EPOLLOUT), and the close would then never be carried out.
                serviceScheduled = true
                return (true, false)
            case .waitForReplies:
                openFlag.store(false, ordering: .relaxed)
                return (false, false)
            case .ignore:
                return (false, false)
            }
        }
        publish()
        for continuation in failed { continuation.resume(throwing: closedError) }
        if alreadyClosed { waiter?.resume() }
        if schedule { loop.schedule(self) }
    }

    // MARK: - The loop's side

    func serviceOnLoop() {
        if locked({ closeOnLoop }) { return finishClose(RedisError(.closed, "the connection to \(address) was closed")) }
        flush()
    }

    func writableOnLoop() {
        waitingForWritable = false
        loop.watchWritable(false, id: id, descriptor: transport.descriptor)
        flush()
    }

    /// Writes the queued requests: everything queued so far in one `send`
    /// when the socket takes it, the rest when it has room (`EPOLLOUT`).
    private func flush() {
        guard !waitingForWritable, !socketClosed else { return }
        while true {
            if sendingOffset == sending.count {
                sending.removeAll(keepingCapacityUpTo: Self.retainedBufferCapacity)
                sendingOffset = 0
                let more = locked { () -> Bool? in
                    if closeOnLoop { return nil }
                    guard outbound.count > 0 else {
                        serviceScheduled = false
                        return false
                    }
                    swap(&outbound, &sending)
                    return true
                }
                guard let more else { return finishClose(RedisError(.closed, "the connection to \(address) was closed")) }
                guard more else { return }
            }
            let progress = sending.withBytes { bytes in
                transport.write(UnsafeRawBufferPointer(rebasing: bytes[sendingOffset...]))
            }
            switch progress {
            case .moved(let count):
                sendingOffset += count
                writtenBytes &+= UInt64(count)
            case .wouldBlock, .endOfStream:
                waitingForWritable = true
                loop.watchWritable(true, id: id, descriptor: transport.descriptor)
                return
            case .failed, .tlsFailed:
                // The server may have answered before it closed (the replies
                // of requests that ran, or its maxclients refusal): read
                // what it sent first, which fails the connection with the
                // server's own words when it refused.
                readableOnLoop()
                return fail(connection.transportError(progress, during: .writing))
            }
        }
    }

    func readableOnLoop() {
        guard !socketClosed else { return }
        var failure: RedisError?
        reading: while true {
            switch transport.read(into: readBuffer) {
            case .moved(let count):
                do {
                    try connection.feedReplies(UnsafeRawBufferPointer(rebasing: readBuffer[..<count])) { arrived.append($0) }
                } catch {
                    failure = error
                    break reading
                }
                // A short read emptied the socket, unless TLS holds a record
                // back, which epoll would not report again.
                if count < readBuffer.count, !transport.hasBufferedInput { break reading }
            case .wouldBlock:
                break reading
            case let stopped:
                failure = connection.transportError(stopped, during: .reading)
                break reading
            }
        }
        if !arrived.isEmpty { deliverArrived() }
        if let failure { fail(failure) }
    }

    /// Hands the replies read to their requests, in order; resumes them
    /// outside the lock.
    private func deliverArrived() {
        var pushed: [RedisReply] = []
        var protocolFailure: RedisError?
        var closeAfter = false
        locked {
            while let reply = arrived.popFirst() {
                let action = machine.replyReceived()
                switch action {
                case .deliver, .deliverAndClose:
                    if case .deliverAndClose = action { closeAfter = true }
                    if pending[0].remaining > 1 {
                        pending[0].remaining -= 1
                        pending[0].collected?.append(reply)
                        continue
                    }
                    var slot = pending.removeFirst()
                    headSequence &+= 1
                    let outcome: Result<RedisReply, any Error>
                    if slot.collected != nil {
                        slot.collected!.append(reply)
                        outcome = .success(.array(slot.collected!))
                    } else {
                        outcome = .success(reply)
                    }
                    if let continuation = slot.continuation { resumptions.append((continuation, outcome)) }
                case .push:
                    pushed.append(reply)
                case .fail(let error):
                    protocolFailure = error
                case .drop:
                    break
                }
            }
        }
        publish()
        while let (continuation, result) = resumptions.popFirst() { continuation.resume(with: result) }
        if let onPush { for reply in pushed { onPush(reply) } }
        if let protocolFailure { fail(protocolFailure) } else if closeAfter { finishClose(RedisError(.closed, "the connection to \(address) was closed")) }
    }

    /// Publishes what this thread built for the callers it resumes next (see ``handoff``).
    @inline(__always)
    func publish() {
        handoff.wrappingAdd(1, ordering: .releasing)
    }

    /// Takes what the resuming thread published (see ``handoff``).
    @inline(__always)
    func receive() {
        _ = handoff.load(ordering: .acquiring)
    }

    func expireOnLoop(now: UInt64) -> UInt64 {
        let late = locked { () -> (slot: Slot, written: UInt64)? in
            guard let first = pending.first else { return nil }
            return first.deadline <= now ? (first, writtenBytes) : nil
        }
        guard let late else { return locked { pending.first?.deadline ?? .max } }
        let error = late.slot.endOffset > late.written
            ? RedisError(.writeTimeout, "could not write a request to \(address) within \(timeout?.readable ?? "the timeout") (commandTimeout): the server is not reading; the connection was reset")
            : RedisError(.readTimeout, "no reply from \(address) within \(timeout?.readable ?? "the timeout") (commandTimeout; for a blocking command, its own timeout plus blockingCommandTimeout); the connection was reset")
        fail(error, first: error)
        return .max
    }

    /// Fails every request in flight and closes: the oldest with `first`
    /// (its own timeout) when given, all of them with `error` otherwise.
    private func fail(_ error: RedisError, first: RedisError? = nil) {
        let others = first == nil ? error : RedisError(.connectionClosed, "the connection to \(address) was reset because an earlier request on it timed out; this request may or may not have run")
        var failed: [(UnsafeContinuation<RedisReply, any Error>, RedisError)] = []
        locked {
            guard machine.failed(error) == .failAll else { return }
            // Pools stop handing it out now, not once the socket is closed.
            openFlag.store(false, ordering: .relaxed)
            for (index, slot) in pending.enumerated() {
                let reason = index == 0 ? (first ?? error) : others
                if let continuation = slot.continuation {
                    failed.append((continuation, reason))
                }
            }
            headSequence &+= UInt64(pending.count)
            pending.removeAll()
        }
        publish()
        for (continuation, reason) in failed { continuation.resume(throwing: reason) }
        finishClose(error)
    }

    /// Stops watching the socket, then closes it with a reset (see
    /// ``RedisConnection/close(resetting:)``) and wakes those waiting for the close.
    private func finishClose(_ error: RedisError) {
        guard !socketClosed else { return }
        openFlag.store(false, ordering: .relaxed)
        loop.deregister(id: id, descriptor: transport.descriptor)
        connection.close(resetting: true)
        let waiters = locked { () -> [CheckedContinuation<Void, Never>] in
            socketClosed = true
            _ = machine.closeRequested(graceful: false)
            defer { closeWaiters.removeAll() }
            return closeWaiters
        }
        onClose?(error)
        for waiter in waiters { waiter.resume() }
    }

    /// Where a request's cancellation handler and its ``enqueue(_:_:replies:batch:timeout:_:)``
    /// meet, whichever runs first: one word, swapped by each. It lives in
    /// the calling task's frame (it is not copyable), so a request allocates
    /// nothing for it.
    private struct Ticket: ~Copyable, Sendable {
        /// 0 until either side runs; then the request's sequence number
        /// plus one (queued) or ``cancelledMark`` (cancelled first).
        private let state = Atomic<UInt64>(0)
        private static let cancelledMark = UInt64.max

        /// The request is queued as `sequence`: if the task was cancelled
        /// before, resume it now.
        func queued(_ sequence: UInt64, on connection: EventLoopConnection) {
            if state.exchange(sequence &+ 1, ordering: .sequentiallyConsistent) == Self.cancelledMark {
                connection.cancel(sequence: sequence)
            }
        }

        /// The task was cancelled: resume its request now if it is queued;
        /// otherwise ``queued(_:on:)`` will.
        func cancel(on connection: EventLoopConnection) {
            let queued = state.exchange(Self.cancelledMark, ordering: .sequentiallyConsistent)
            if queued != 0, queued != Self.cancelledMark { connection.cancel(sequence: queued - 1) }
        }
    }
}

