import Logging
import Dispatch
import Foundation
import Synchronization

/// Where a ``DistributedLock`` keeps its key: Redis for ``RedisCacheAdapter``,
/// process memory for ``InMemoryCacheAdapter``.
protocol LockStore: Sendable {
    /// `SET key owner NX PX ttl`: `true` when this owner now holds the lock.
    func tryAcquire(key: String, owner: String, ttl: Duration) throws(RedisError) -> Bool
    /// Like ``tryAcquire(key:owner:ttl:)`` and, on success, increments the
    /// lock's fencing counter in the same atomic step: the new token, or `nil`.
    func tryAcquireFenced(key: String, owner: String, ttl: Duration) throws(RedisError) -> Int64?
    /// Deletes the key iff it holds `owner` and wakes one waiter.
    func release(key: String, owner: String) throws(RedisError) -> LockReleaseOutcome
    /// Sets (or adds to) the key's time to live iff it holds `owner`: `true` when done.
    func extend(key: String, owner: String, by duration: Duration, adding: Bool) throws(RedisError) -> Bool
    /// The owner stored at `key`, or `nil` when nobody holds it.
    func owner(key: String) throws(RedisError) -> String?
    /// The lock's fencing counter now (`GET key:fence`), 0 when never fenced.
    func currentFencingToken(key: String) throws(RedisError) -> Int64
    /// Waits until a release of `key` is signalled or `timeout` passes, whichever is first.
    func waitForRelease(key: String, timeout: Duration) throws(RedisError)
    /// Where lock metrics go.
    var telemetry: Telemetry { get }
    /// Where a lost lock is logged (at `.warning`).
    var logger: Logger? { get }
    /// How long a wait rides out failures to reach the store (``RedisConfiguration/Retry/lockOutageLimit``).
    var outageLimit: Duration { get }

    // The same, for the `async` lock calls: they suspend, never block a thread.

    /// ``tryAcquire(key:owner:ttl:)-(_,_,_)`` without blocking a thread.
    func tryAcquire(key: String, owner: String, ttl: Duration) async throws -> Bool
    /// ``tryAcquireFenced(key:owner:ttl:)-(_,_,_)`` without blocking a thread.
    func tryAcquireFenced(key: String, owner: String, ttl: Duration) async throws -> Int64?
    /// ``release(key:owner:)-(_,_)`` without blocking a thread.
    func release(key: String, owner: String) async throws -> LockReleaseOutcome
    /// ``extend(key:owner:by:adding:)-(_,_,_,_)`` without blocking a thread.
    func extend(key: String, owner: String, by duration: Duration, adding: Bool) async throws -> Bool
    /// ``owner(key:)-(_)`` without blocking a thread.
    func owner(key: String) async throws -> String?
    /// ``currentFencingToken(key:)-(_)`` without blocking a thread.
    func currentFencingToken(key: String) async throws -> Int64
    /// ``waitForRelease(key:timeout:)-(_,_)``, suspending.
    func waitForRelease(key: String, timeout: Duration) async throws
}

/// What a release found.
enum LockReleaseOutcome: Sendable, Equatable {
    /// The key held this owner and is deleted.
    case released
    /// Nobody holds the key (it expired, or an earlier release ran).
    case absent
    /// Another owner holds the key; it was left alone.
    case heldByAnother
}

/// A lock shared by every process that uses the same key, Python Baldur
/// services included (same key, same `SET NX PX` protocol, same release script
/// semantics).
///
/// Get one from `CacheProvider/getLock(_:timeout:blockingTimeout:)`; the
/// storage key is resolved once, there, and never shifts afterwards.
///
/// ```swift
/// let lock = cache.getLock("payments:settle", timeout: .seconds(30))
/// try lock.withLock(autoRenew: true) {
///     try settlePayments()
/// }
/// ```
///
/// - **Safety.** The lock expires after `timeout` even if its holder dies.
///   Release and extend check ownership atomically (one Lua script), so a
///   holder whose lock expired and was taken over never deletes the new
///   owner's key: it gets ``RedisError/Code/lockNotOwned``.
/// - **Fast handoff.** Uncontended, acquire + release is two round trips
///   (`SET NX PX`, `EVALSHA`). A waiter blocks on the lock's signal list
///   (`BLPOP key:signal`), which a release by this library pushes to, so the
///   longest waiter gets the lock within a round trip of its release. It
///   re-checks every ~100 ms (with jitter) anyway, so a release that sends no
///   signal (Python's, or an expiry) costs at most one interval.
/// - **Fencing.** `acquireWithFencingToken(blocking:timeout:)` also returns
///   a strictly increasing token from the same atomic script; pass it to a
///   resource that refuses stale tokens (`RedisCacheAdapter/setIfFenced(_:_:fencingToken:)`).
/// - **Renewal.** ``startAutoRenewal(every:onLost:)`` (or `withLock(autoRenew: true)`)
///   extends the lock while it is held and reports its loss.
///
/// Every call has a blocking form, for threads, and an `async` form of the
/// same name (DistributedLock+Async.swift) that suspends instead; `async`
/// code gets the `async` form.
public final class DistributedLock: Sendable {
    /// The storage key, prefix included.
    public let key: String
    /// This handle's owner token: `host:pid:swift:<128 random bits in hex>`.
    /// It belongs to the handle, not to a thread.
    public let owner: String
    /// How long the lock lives without an extension (`PX`).
    public let timeout: Duration
    /// How long `acquire(blocking:timeout:)` waits by default; `nil` waits forever.
    public let blockingTimeout: Duration?
    /// The longest a waiter sleeps between checks when no release signal arrives: 100 ms.
    public static let fallbackPollInterval: Duration = .milliseconds(100)
    /// This handle's fallback poll interval (tests lengthen it to prove the signal path).
    let pollInterval: Duration

    let store: any LockStore
    let state = PlainMutex(State())

    struct State {
        var held = false
        var fencingToken: Int64?
        var lost: RedisError?
        /// Bumped on every start and stop of auto-renewal, so a stale timer stops itself.
        var renewalGeneration = 0
        var renewing = false
        /// A release failed in a way that leaves open whether the script ran;
        /// a retry that then finds the key gone has released it.
        var releaseInDoubt = false
    }

    init(
        key: String, store: any LockStore, timeout: Duration, blockingTimeout: Duration?,
        pollInterval: Duration = fallbackPollInterval, owner: String? = nil
    ) {
        self.pollInterval = pollInterval
        self.key = key
        self.store = store
        self.timeout = timeout
        self.blockingTimeout = blockingTimeout
        self.owner = owner ?? Self.makeOwner()
    }

    /// The fencing token of the current hold, when it was taken with
    /// `acquireWithFencingToken(blocking:timeout:)`.
    public var fencingToken: Int64? { state.withLock { $0.fencingToken } }

    /// The error auto-renewal met when it found the lock lost, or `nil`.
    public var lostError: RedisError? { state.withLock { $0.lost } }

    /// Takes the lock: `SET key owner NX PX timeout`, retried while blocking.
    ///
    /// A blocking acquire retries transient failures (``RedisError/isTransient``:
    /// a restart, a dropped connection, `LOADING`) with jittered backoff
    /// until its wait is spent, and makes no attempt once it is.
    ///
    /// - Parameters:
    ///   - blocking: `false` tries once.
    ///   - timeout: How long to wait when blocking (0 to 100 years); defaults
    ///     to the lock's `blockingTimeout` (`nil` there: forever).
    /// - Returns: `true` when this handle now holds the lock.
    /// - Throws: ``RedisError/Code/invalidArgument`` when this handle already
    ///   holds the lock, or the lock's timeout is not 1 ms to 100 years;
    ///   ``RedisError`` when the store cannot be reached (non-blocking) or a
    ///   failure is not transient.
    @discardableResult
    @_disfavoredOverload
    public func acquire(blocking: Bool = true, timeout: Duration? = nil) throws(RedisError) -> Bool {
        try acquire(blocking: blocking, timeout: timeout, fenced: false) != nil
    }

    /// Takes the lock and returns a fencing token: one script does `SET key
    /// owner NX PX timeout` and `INCR key:fence`, so tokens grow strictly with
    /// every acquisition of this lock, by any holder.
    ///
    /// - Returns: The token, or `nil` when the lock was not acquired.
    @_disfavoredOverload
    public func acquireWithFencingToken(blocking: Bool = true, timeout: Duration? = nil) throws(RedisError) -> Int64? {
        try acquire(blocking: blocking, timeout: timeout, fenced: true)
    }

    private func acquire(blocking: Bool, timeout: Duration?, fenced: Bool) throws(RedisError) -> Int64? {
        var plan = try beginAcquire(blocking: blocking, timeout: timeout)
        var step = plan.next()
        while true {
            switch step {
            case .attempt(let afterDoubt):
                do {
                    let token = try attempt(fenced: fenced, afterDoubt: afterDoubt)
                    if let token { return acquired(token, fenced: fenced, plan: plan) }
                    step = plan.refused(telemetry: store.telemetry)
                } catch {
                    step = try plan.failed(error, attempting: true)
                }
            case .waitForRelease(let pause):
                do {
                    try store.waitForRelease(key: key, timeout: pause)
                    step = plan.waited()
                } catch {
                    step = try plan.failed(error, attempting: false)
                }
            case .sleep(let delay):
                Thread.sleep(forTimeInterval: Double(delay.nanoseconds) / 1e9)
                step = plan.next()
            case .giveUp:
                return nil
            case .fail(let error):
                throw error
            }
        }
    }

    /// Checks the arguments and the handle, and plans the acquire loop.
    func beginAcquire(blocking: Bool, timeout: Duration?) throws(RedisError) -> AcquirePlan {
        _ = try self.timeout.checked("a lock timeout", in: .milliseconds(1)...Duration.longestAccepted)
        let wait = try (timeout ?? blockingTimeout).map { wait throws(RedisError) in
            try wait.checked("a lock wait", in: .zero...Duration.longestAccepted)
        }
        if state.withLock({ $0.held }) {
            // SET NX would fail against our own key and a blocking wait would
            // wait for itself until the key expires.
            throw RedisError(.invalidArgument, "lock '\(key)' is already held by this handle; release it before acquiring it again")
        }
        return AcquirePlan(
            blocking: blocking, deadline: wait.map { ContinuousClock.now + $0 }, pollInterval: pollInterval,
            outageLimit: store.outageLimit
        )
    }

    /// Records a successful acquisition.
    func acquired(_ token: Int64, fenced: Bool, plan: AcquirePlan) -> Int64 {
        state.withLock { state in
            state.held = true
            state.lost = nil
            state.releaseInDoubt = false
            state.fencingToken = fenced ? token : nil
        }
        store.telemetry.lock(.acquired(after: plan.contendedSince.map { ContinuousClock.now - $0 }))
        return token
    }

    /// One `SET NX PX` (or the fenced script). After an attempt whose outcome
    /// is unknown, a refusal is checked against the stored owner: if the
    /// earlier `SET` landed, the lock is this handle's.
    private func attempt(fenced: Bool, afterDoubt inDoubt: Bool) throws(RedisError) -> Int64? {
        let token: Int64?
        if fenced {
            token = try store.tryAcquireFenced(key: key, owner: owner, ttl: timeout)
        } else {
            token = try store.tryAcquire(key: key, owner: owner, ttl: timeout) ? 0 : nil
        }
        guard token == nil, inDoubt, try store.owner(key: key) == owner else { return token }
        // Nobody can have taken the lock between our SET and now, so the
        // counter still holds the token that SET's script issued.
        return fenced ? try store.currentFencingToken(key: key) : 0
    }

    /// Releases the lock: one script deletes the key only if it still holds
    /// this owner, and signals one waiter. Stops auto-renewal.
    ///
    /// A release that fails with a transient error (timeout, dropped
    /// connection) leaves the handle holding the lock, so it can be retried;
    /// a retry that finds the key gone counts as released, since either the
    /// first attempt ran or the key expired, and nobody else holds it.
    ///
    /// - Throws: ``RedisError/Code/lockNotOwned`` when this handle does not
    ///   hold the lock (never acquired, already released, or expired and
    ///   perhaps taken by someone else, whose key is left alone).
    @_disfavoredOverload
    public func release() throws(RedisError) {
        let inDoubt = try beginRelease()
        let outcome: LockReleaseOutcome
        do {
            outcome = try store.release(key: key, owner: owner)
        } catch {
            releaseFailed(error)
            throw error
        }
        try finishRelease(outcome, inDoubt: inDoubt)
    }

    /// Stops renewal; throws unless the handle holds the lock. Returns
    /// whether an earlier release attempt left its outcome open.
    func beginRelease() throws(RedisError) -> Bool {
        let (wasHeld, inDoubt) = state.withLock { state in
            state.renewalGeneration += 1
            state.renewing = false
            return (state.held, state.releaseInDoubt)
        }
        guard wasHeld else {
            throw RedisError(.lockNotOwned, "lock '\(key)' is not held by this handle")
        }
        return inDoubt
    }

    func releaseFailed(_ error: RedisError) {
        if error.isTransient { state.withLock { $0.releaseInDoubt = true } }
    }

    func finishRelease(_ outcome: LockReleaseOutcome, inDoubt: Bool) throws(RedisError) {
        state.withLock { state in
            state.held = false
            state.fencingToken = nil
            state.releaseInDoubt = false
        }
        switch outcome {
        case .released:
            return
        case .absent where inDoubt:
            return
        case .absent, .heldByAnother:
            store.telemetry.lock(.lost)
            throw RedisError(.lockNotOwned, "lock '\(key)' expired before it was released; another owner may hold it")
        }
    }

    /// `true` when anyone holds the lock (`GET`).
    @_disfavoredOverload
    public func locked() throws(RedisError) -> Bool {
        try store.owner(key: key) != nil
    }

    /// `true` when this handle holds the lock now: the stored owner is this handle's token (`GET`).
    @_disfavoredOverload
    public func owned() throws(RedisError) -> Bool {
        try store.owner(key: key) == owner
    }

    /// Adds `duration` to the lock's remaining time (`PTTL` + `PEXPIRE`, in one script).
    ///
    /// - Throws: ``RedisError/Code/lockNotOwned`` when this handle does not hold the lock.
    @_disfavoredOverload
    public func extend(by duration: Duration) throws(RedisError) {
        try extend(duration, adding: true)
    }

    /// Sets the lock's remaining time to `duration` (`PEXPIRE`, in one
    /// script), as Python's `extend` does.
    ///
    /// - Throws: ``RedisError/Code/lockNotOwned`` when this handle does not hold the lock.
    @_disfavoredOverload
    public func extend(to duration: Duration) throws(RedisError) {
        try extend(duration, adding: false)
    }

    /// Runs `body` while holding the lock and releases it on every path, throws included.
    ///
    /// - Parameters:
    ///   - autoRenew: Keep the lock alive while `body` runs (see ``startAutoRenewal(every:onLost:)``).
    ///   - body: The critical section.
    /// - Throws: ``RedisError/Code/lockNotAcquired`` when the lock could not be
    ///   had within `blockingTimeout`; whatever `body` throws; and
    ///   ``RedisError/Code/lockNotOwned`` when `body` succeeded but the lock
    ///   had been lost before the release (the section was not exclusive to the end).
    // Disfavoured so that `async` code, which can call either, gets the
    // suspending `withLock` even for a closure that does not await.
    @_disfavoredOverload
    public func withLock<R>(autoRenew: Bool = false, _ body: () throws -> R) throws -> R {
        guard try acquire() else { throw notAcquired() }
        if autoRenew {
            do { try startAutoRenewal() } catch {
                try? release()
                throw error
            }
        }
        let result: R
        do {
            result = try body()
        } catch {
            try? release()
            throw error
        }
        try release()
        return result
    }

    /// Extends the held lock back to its full `timeout` every `interval`
    /// (default a third of the timeout) on a background timer, until
    /// `release()`, ``stopAutoRenewal()`` or the handle is deallocated.
    ///
    /// Each renewing handle has a timer queue of its own, so a renewal stuck
    /// on a slow server never delays another lock's.
    ///
    /// When an extension finds the lock owned by someone else (it expired
    /// anyway: the process stalled longer than the timeout), renewal stops,
    /// ``lostError`` is set and `onLost` is called once: the holder must stop
    /// acting as the owner. A transient error (Redis unreachable) is retried
    /// at the next tick; if it lasts past the timeout, the next successful
    /// call reports the loss.
    ///
    /// - Throws: ``RedisError/Code/invalidArgument`` when `interval` is not
    ///   between 1 ms and the lock's timeout.
    public func startAutoRenewal(every interval: Duration? = nil, onLost: (@Sendable (RedisError) -> Void)? = nil) throws(RedisError) {
        let interval = try (interval ?? max(timeout / 3, .milliseconds(1)))
            .checked("a renewal interval", in: .milliseconds(1)...max(timeout, .milliseconds(1)))
        let generation: Int? = state.withLock { state in
            guard state.held else { return nil }
            state.renewalGeneration += 1
            state.renewing = true
            return state.renewalGeneration
        }
        guard let generation else { return }
        let queue = DispatchQueue(label: "BaldurCache.lock-renewal")
        Self.scheduleRenewal(of: self, on: queue, generation: generation, interval: interval, onLost: onLost)
    }

    /// Stops auto-renewal; the lock stays held until it expires or is released.
    public func stopAutoRenewal() {
        state.withLock { state in
            state.renewalGeneration += 1
            state.renewing = false
        }
    }

    private static func scheduleRenewal(
        of lock: DistributedLock, on queue: DispatchQueue, generation: Int, interval: Duration, onLost: (@Sendable (RedisError) -> Void)?
    ) {
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(interval.nanoseconds))) { [weak lock] in
            guard let lock, lock.state.withLock({ $0.renewing && $0.renewalGeneration == generation }) else { return }
            do {
                guard try lock.store.extend(key: lock.key, owner: lock.owner, by: lock.timeout, adding: false) else {
                    throw RedisError(.lockNotOwned, "lock '\(lock.key)' was lost: it expired or another owner holds it")
                }
            } catch let error as RedisError where error.code == .lockNotOwned {
                let report = lock.state.withLock { state -> Bool in
                    guard state.renewalGeneration == generation else { return false }
                    state.lost = error
                    state.held = false
                    state.renewing = false
                    return true
                }
                if report {
                    lock.store.telemetry.lock(.lost)
                    lock.store.logger?.warning("redis lock lost while renewing it: it expired or another owner holds it", metadata: ["redis.lock": "\(lock.key)"])
                    onLost?(error)
                }
                return
            } catch {
                // Transient: try again at the next tick.
            }
            scheduleRenewal(of: lock, on: queue, generation: generation, interval: interval, onLost: onLost)
        }
    }

    private func extend(_ duration: Duration, adding: Bool) throws(RedisError) {
        try beginExtend(duration)
        guard try store.extend(key: key, owner: owner, by: duration, adding: adding) else { throw extensionRefused() }
    }

    func beginExtend(_ duration: Duration) throws(RedisError) {
        _ = try duration.checked("a lock extension", in: .milliseconds(1)...Duration.longestAccepted)
        guard state.withLock({ $0.held }) else {
            throw RedisError(.lockNotOwned, "lock '\(key)' is not held by this handle")
        }
    }

    func extensionRefused() -> RedisError {
        state.withLock { $0.held = false }
        return RedisError(.lockNotOwned, "lock '\(key)' expired before it was extended; another owner may hold it")
    }

    /// The error ``withLock(autoRenew:_:)`` throws when the wait ran out.
    func notAcquired() -> RedisError {
        RedisError(.lockNotAcquired, "lock '\(key)' was not acquired within \(blockingTimeout.map { $0.readable } ?? "the wait")")
    }

    static func makeOwner() -> String {
        var generator = SystemRandomNumberGenerator()
        let random = (0..<2).map { _ in String(generator.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
        return "\(ProcessInfo.processInfo.hostName):\(getpid()):swift:\(random)"
    }
}
