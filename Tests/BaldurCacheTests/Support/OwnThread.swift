@testable import BaldurCache
import Foundation
import Synchronization
import Testing

/// Runs `body` (blocking calls) on a thread of its own, never a
/// cooperative-pool thread, and returns its result when it ends.
func onOwnThread<R: Sendable>(_ body: @escaping @Sendable () -> R) async -> R {
    await withCheckedContinuation { done in Thread { done.resume(returning: body()) }.start() }
}

extension Trait where Self == OwnThreadTrait {
    /// Runs the test on a thread of its own (see ``OwnThreadTrait``).
    static var ownThread: Self { OwnThreadTrait() }
}

/// Runs a synchronous test on a thread of its own instead of a thread of
/// Swift's cooperative pool.
///
/// Swift Testing runs every test on the cooperative pool, which has one
/// thread per core (two here). A synchronous test that blocks for seconds
/// (a stalled server, a child process, a failover) holds one of them, and
/// two such tests hold them all: the async tests beside them then wait for
/// a thread, and the durations they measure are the pool's, not the
/// library's (a 1.5 s `BLPOP` deadline measured 5.7 and 11 s in CI).
/// Every synchronous test that talks to a server carries this trait.
///
/// At most ``limit`` such tests run at once (the others wait without a
/// thread), so that tests which time something keep their share of the CPU.
///
/// The test runs with a ``ThreadExecutor`` as its task executor
/// preference, so the synchronous body runs on that executor's thread.
/// Meant for synchronous tests: an async one's child tasks would inherit
/// the preference and share the one thread.
struct OwnThreadTrait: TestTrait, TestScoping {
    /// How many tests run on threads of their own at once: most of them
    /// wait on a server, so more than the two cores; two under
    /// ThreadSanitizer, where each costs 5-10 times the CPU (with four, an
    /// interop test's 10 s lock expired across its slowed Python processes).
    static let limit = TestEnvironment.underThreadSanitizer ? 2 : 4
    private static let slots = TestSlots(limit)

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await Self.slots.acquire()
        defer { Self.slots.release() }
        let executor = ThreadExecutor(name: test.name)
        defer { executor.finish() }
        try await withTaskExecutorPreference(executor) { try await function() }
    }
}

/// A counting semaphore whose waiters suspend (they hold no thread).
final class TestSlots: Sendable {
    private struct State {
        var free: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: PlainMutex<State>

    init(_ count: Int) { state = PlainMutex(State(free: count)) }

    func acquire() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                guard state.free > 0 else {
                    state.waiters.append(waiter)
                    return false
                }
                state.free -= 1
                return true
            }
            if granted { waiter.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiters.isEmpty else {
                state.free += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}

/// A task executor with one thread of its own, which runs its jobs in
/// order. After ``finish()`` the thread ends once it has run what it has;
/// jobs that still arrive go to the global concurrent executor. (A `Task { }`
/// started by a blocking body did not run here: it ran while the body
/// waited for it, so it did not inherit the preference.)
final class ThreadExecutor: TaskExecutor {
    private struct State {
        var jobs: [UnownedJob] = []
        var finished = false
    }

    private let state = PlainMutex(State())
    private let condition = NSCondition()
    /// The threads of the executors now running (`pthread_self()` values).
    /// A ``PlainMutex``, not `Synchronization.Mutex`: ThreadSanitizer does
    /// not see what a `Mutex` orders on Linux and reported an access race
    /// on this set once in CI (see ``PlainMutex``).
    private static let running = PlainMutex<Set<UInt>>([])

    /// Whether the caller runs on a ``ThreadExecutor``'s thread.
    static var isCurrent: Bool { running.withLock { $0.contains(UInt(pthread_self())) } }

    init(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = "test: \(name)"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        let accepted = state.withLock { state in
            guard !state.finished else { return false }
            state.jobs.append(job)
            return true
        }
        condition.signal()
        condition.unlock()
        if !accepted { globalConcurrentExecutor.enqueue(job) }
    }

    /// Lets the thread end once its queue is empty.
    func finish() {
        condition.lock()
        state.withLock { $0.finished = true }
        condition.signal()
        condition.unlock()
    }

    private func run() {
        let executor = asUnownedTaskExecutor()
        let thread = UInt(pthread_self())
        Self.running.withLock { _ = $0.insert(thread) }
        defer { Self.running.withLock { _ = $0.remove(thread) } }
        while true {
            condition.lock()
            var batch: [UnownedJob] = []
            var finished = false
            while true {
                (batch, finished) = state.withLock { state in
                    defer { state.jobs.removeAll() }
                    return (state.jobs, state.finished)
                }
                if !batch.isEmpty || finished { break }
                condition.wait()
            }
            condition.unlock()
            for job in batch { job.runSynchronously(on: executor) }
            if batch.isEmpty && finished { return }
        }
    }
}

@Suite("Test harness: a thread of its own")
struct OwnThreadTraitTests {
    @Test("a test marked .ownThread runs on its executor's thread", .ownThread)
    func markedTestRunsOnItsOwnThread() {
        #expect(ThreadExecutor.isCurrent)
    }

    @Test("of TestSlots(4), a fifth acquire waits until one of the four is released")
    func slotsBoundConcurrency() async {
        let slots = TestSlots(4)
        for _ in 0..<4 { await slots.acquire() }
        let fifthIn = Atomic<Bool>(false)
        async let fifth: Void = { await slots.acquire(); fifthIn.store(true, ordering: .releasing) }()
        try? await Task.sleep(for: .milliseconds(200))
        let inBeforeRelease = fifthIn.load(ordering: .acquiring)
        #expect(!inBeforeRelease)
        slots.release()
        await fifth
        let inAfterRelease = fifthIn.load(ordering: .acquiring)
        #expect(inAfterRelease)
    }

    @Test("an unmarked test runs where Swift Testing puts it")
    func unmarkedTestDoesNot() {
        #expect(!ThreadExecutor.isCurrent)
    }
}
