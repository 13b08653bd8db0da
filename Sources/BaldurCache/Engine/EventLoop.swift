import CLinuxEvents
import Foundation
import Synchronization

/// What an event loop drives: one socket and the requests waiting on it.
/// Every method is called on the loop's thread only.
protocol EventLoopHandler: AnyObject, Sendable {
    /// Writes what callers queued, and carries out a requested close.
    func serviceOnLoop()
    /// The socket has input, or hung up.
    func readableOnLoop()
    /// The socket has room again after a write that did not fit.
    func writableOnLoop()
    /// Fails what passed its deadline at `now`; returns the next deadline
    /// (``Monotonic`` nanoseconds), or `UInt64.max` for none.
    func expireOnLoop(now: UInt64) -> UInt64
}

/// Nanoseconds on the monotonic clock, the loop's unit for deadlines.
enum Monotonic {
    @inline(__always)
    static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// The coarse monotonic clock (a few ms resolution, no `rdtsc`): for
    /// request deadlines, which are whole milliseconds or more, taken once
    /// per request.
    @inline(__always)
    static func coarseNow() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// `now` plus `timeout`, saturating; `UInt64.max` for no timeout.
    static func deadline(after timeout: Duration?, from now: UInt64 = now()) -> UInt64 {
        deadline(afterNanoseconds: timeout.map { UInt64(clamping: $0.nanoseconds) }, from: now)
    }

    /// `now` plus `nanoseconds`, saturating; `UInt64.max` for no timeout.
    @inline(__always)
    static func deadline(afterNanoseconds nanoseconds: UInt64?, from now: UInt64) -> UInt64 {
        guard let nanoseconds else { return .max }
        let (sum, overflow) = now.addingReportingOverflow(nanoseconds)
        return overflow ? .max : sum
    }
}

/// One thread, one `epoll` instance: the engine's event loop.
///
/// Callers on any thread queue work for a connection with ``schedule(_:)``;
/// the loop writes it, reads replies as they arrive and hands them to the
/// waiting continuations. The loop sleeps in `epoll_wait` only when it has
/// nothing to do; a caller that queues work for a sleeping loop wakes it
/// through an `eventfd`, and one that finds it awake does not (under load the
/// loop never sleeps, so requests cost no wake-up at all).
///
/// After any activity the loop polls for a short while (``spinBudget``),
/// yielding the CPU between polls, before it sleeps: on virtual machines
/// waking an idle thread costs more than a loopback round trip, and the
/// callers it just resumed send their next requests within microseconds.
final class EventLoop: Sendable {
    /// The process's loops, shared by every client (threads are started on first use).
    static let shared: [EventLoop] = (0..<max(1, ProcessInfo.processInfo.activeProcessorCount / 4)).map { EventLoop(index: $0) }
    private static let nextLoop = Atomic<Int>(0)

    /// The loop for a new connection: round robin over ``shared``.
    static func next() -> EventLoop {
        shared[nextLoop.wrappingAdd(1, ordering: .relaxed).oldValue % shared.count]
    }

    /// How long the loop polls after its last activity before it sleeps:
    /// the callers it just resumed send their next requests within
    /// microseconds, and a loop that is awake needs no `eventfd` wake-up
    /// for them. (Measured with `baldur-bench --profile asyncraw`: polling
    /// only while few requests were in flight cost 15-30% more CPU per
    /// call at 256 and 1024 tasks, in `eventfd` wake-ups and small writes.)
    static let spinBudget: UInt64 = 50_000

    private let epoll: Int32
    private let wakeDescriptor: Int32

    private struct State: Sendable {
        /// Handlers with work queued, in the order they asked.
        var ready: [any EventLoopHandler] = []
        /// Tasks' jobs to run on this thread (the loop as a `TaskExecutor`).
        var jobs: [UnownedJob] = []
        /// The loop is in (or about to enter) a sleeping `epoll_wait`.
        var sleeping = false
        /// Registered handlers by the id their epoll events carry.
        var handlers: [UInt64: any EventLoopHandler] = [:]
        var nextID: UInt64 = 1
    }

    private let state = PlainMutex(State())
    /// Whether `State.jobs` may hold jobs: read without the lock every
    /// turn, so a loop that runs no task's code pays nothing for the executor.
    private let hasJobs = Atomic<Bool>(false)
    /// The loop's thread (`pthread_self()` there), set when it starts.
    private let thread = Atomic<UInt>(0)
    /// The earliest deadline any handler reported; lowered by callers with ``noteDeadline(_:)``.
    private let nextDeadline = Atomic<UInt64>(.max)

    private init(index: Int) {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wakeDescriptor = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(epoll >= 0 && wakeDescriptor >= 0, "BaldurCache could not create its event loop (errno \(errno))")
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = 0
        epoll_ctl(epoll, EPOLL_CTL_ADD, wakeDescriptor, &event)
        startThread(named: "baldur-loop-\(index)") { [self] in run() }
    }

    // MARK: - Called from any thread

    /// A new id for ``register(_:id:descriptor:)``.
    func makeID() -> UInt64 {
        state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
    }

    /// Adds `descriptor` to the loop for input, its events carrying `id`.
    func register(_ handler: any EventLoopHandler, id: UInt64, descriptor: Int32) throws(RedisError) {
        state.withLock { $0.handlers[id] = handler }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        event.data.u64 = id
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, descriptor, &event) == 0 else {
            let code = errno
            _ = state.withLock { $0.handlers.removeValue(forKey: id) }
            throw RedisError(.io, "could not add a socket to BaldurCache's event loop (errno \(code))")
        }
    }

    /// Whether the caller runs on this loop's thread.
    var isCurrent: Bool { thread.load(ordering: .acquiring) == UInt(pthread_self()) }

    /// Asks the loop to call `handler.serviceOnLoop()` soon, waking it if it sleeps.
    func schedule(_ handler: any EventLoopHandler) {
        let wake = state.withLock { state in
            state.ready.append(handler)
            defer { state.sleeping = false }
            return state.sleeping
        }
        if wake { signal() }
    }

    /// Lowers the loop's next deadline check to `deadline` when it is earlier.
    @inline(__always)
    func noteDeadline(_ deadline: UInt64) {
        var current = nextDeadline.load(ordering: .relaxed)
        while deadline < current {
            let (exchanged, original) = nextDeadline.weakCompareExchange(expected: current, desired: deadline, ordering: .relaxed)
            if exchanged {
                if state.withLock({ $0.sleeping }) { signal() }
                return
            }
            current = original
        }
    }

    private func signal() {
        var one: UInt64 = 1
        _ = write(wakeDescriptor, &one, 8)
    }

    // MARK: - Called on the loop's thread

    /// Removes `descriptor` (before it is closed) and forgets its handler.
    func deregister(id: UInt64, descriptor: Int32) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, descriptor, nil)
        _ = state.withLock { $0.handlers.removeValue(forKey: id) }
    }

    /// Asks for `EPOLLOUT` too (`writable`), or input only.
    func watchWritable(_ writable: Bool, id: UInt64, descriptor: Int32) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (writable ? EPOLLOUT.rawValue : 0)
        event.data.u64 = id
        epoll_ctl(epoll, EPOLL_CTL_MOD, descriptor, &event)
    }

    private func run() {
        let capacity = 256
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        var work: [any EventLoopHandler] = []
        var jobs: [UnownedJob] = []
        var found: [(any EventLoopHandler, UInt32)] = []
        var spinStarted: UInt64 = 0
        let executor = asUnownedTaskExecutor()
        thread.store(UInt(pthread_self()), ordering: .releasing)
        while true {
            // 1. Tasks that prefer this thread (their requests are queued
            // as they run, and written in step 2 of the same turn).
            if hasJobs.load(ordering: .acquiring) {
                state.withLock { state in
                    swap(&jobs, &state.jobs)
                    hasJobs.store(false, ordering: .relaxed)
                }
                for job in jobs { job.runSynchronously(on: executor) }
                jobs.removeAll(keepingCapacity: true)
            }

            // 2. Queued writes and closes.
            state.withLock { state in swap(&work, &state.ready) }
            for handler in work { handler.serviceOnLoop() }
            work.removeAll(keepingCapacity: true)

            // 3. Deadlines.
            var now = Monotonic.now()
            if now >= nextDeadline.load(ordering: .relaxed) {
                nextDeadline.store(.max, ordering: .relaxed)
                let handlers = state.withLock { Array($0.handlers.values) }
                var earliest = UInt64.max
                for handler in handlers { earliest = min(earliest, handler.expireOnLoop(now: now)) }
                noteDeadline(earliest)
            }

            // 4. Wait: poll briefly after activity (the next reply, or the
            // resumed callers' next requests, are likely within
            // microseconds); otherwise sleep until an event or the next deadline.
            var timeout: Int32 = 0
            if spinStarted == 0 { spinStarted = now }
            if now &- spinStarted > Self.spinBudget { timeout = sleepTimeout(now) }
            if timeout != 0 {
                let idle = state.withLock { state in
                    if state.ready.isEmpty && state.jobs.isEmpty { state.sleeping = true }
                    return state.sleeping
                }
                if !idle { timeout = 0 }
            }
            let count = epoll_wait(epoll, events, Int32(capacity), timeout)
            if timeout != 0 { state.withLock { $0.sleeping = false } }
            guard count > 0 else {
                // Polling: let a runnable thread (a caller with its next
                // request, or the server) have this CPU first.
                if timeout == 0 { sched_yield() }
                continue
            }
            spinStarted = 0
            now = Monotonic.now()

            // 5. Socket events.
            state.withLock { state in
                for index in 0..<Int(count) {
                    let event = events[index]
                    if event.data.u64 == 0 { continue }
                    if let handler = state.handlers[event.data.u64] { found.append((handler, event.events)) }
                }
            }
            for index in 0..<Int(count) where events[index].data.u64 == 0 {
                var drained: UInt64 = 0
                _ = read(wakeDescriptor, &drained, 8)
            }
            for (handler, flags) in found {
                if flags & EPOLLOUT.rawValue != 0 { handler.writableOnLoop() }
                if flags & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { handler.readableOnLoop() }
            }
            found.removeAll(keepingCapacity: true)
        }
    }

    /// Milliseconds until the next deadline, rounded up; -1 for none.
    private func sleepTimeout(_ now: UInt64) -> Int32 {
        let deadline = nextDeadline.load(ordering: .relaxed)
        guard deadline != .max else { return -1 }
        guard deadline > now else { return 0 }
        return Int32(clamping: (deadline - now + 999_999) / 1_000_000)
    }
}

/// The loop as an executor: a task that prefers it
/// (`withTaskExecutorPreference`) runs on the loop's thread, so the reply
/// that resumes it is handed over without waking another thread, and the
/// request it sends next is written in the same turn of the loop.
extension EventLoop: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let wake = state.withLock { state in
            state.jobs.append(job)
            // Set under the lock: the loop that clears it takes the jobs under the lock too.
            hasJobs.store(true, ordering: .releasing)
            defer { state.sleeping = false }
            return state.sleeping
        }
        if wake { signal() }
    }
}
