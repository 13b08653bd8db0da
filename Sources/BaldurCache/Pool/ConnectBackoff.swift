import Synchronization

/// When a pool may try a new connection after connects failed: one rule,
/// one per server (``ServerPool``), for the connects of both APIs.
///
/// - Only failures of the connection itself count (refused, timed out,
///   reset, TLS, `maxclients`: ``RedisError/isConnectionFatal``); a wrong
///   password or database is an answer, not an outage.
/// - The first failure is not waited out, so a restart's refused connect
///   does not delay the one after it. From the second in a row on, no new
///   connect is tried for a jittered, doubling delay: 25 ms up to 1 s.
///   Callers that need a connection meanwhile get the last connect error at
///   once, saying how long the pool still waits.
/// - A connect that works, or a connection that proves itself, resets it.
struct ConnectBackoff: Sendable {
    private var backoff = Backoff(initial: .microseconds(12_500), cap: .seconds(1))
    private var nextConnectAt: ContinuousClock.Instant?
    private var lastError: RedisError?

    /// Failed connects in a row.
    var failures: Int { backoff.failures }

    /// The error a caller gets instead of a new connect, or `nil`: connect.
    func refusal(at now: ContinuousClock.Instant = .now) -> RedisError? {
        guard let nextConnectAt, let lastError else { return nil }
        let wait = now.duration(to: nextConnectAt)
        guard wait > .zero else { return nil }
        return RedisError(
            lastError.code,
            "\(lastError.message) [no new connection tried for another \(wait.wholeMillisecondsRoundedUp) ms after \(failures) failed connects]"
        )
    }

    /// A connect failed with `error`. Returns `true` when this failure
    /// started the back-off (the second in a row): the one to log.
    mutating func failed(_ error: RedisError, at now: ContinuousClock.Instant = .now) -> Bool {
        guard error.isConnectionFatal else { return false }
        lastError = error
        let delay = backoff.nextDelay()
        guard failures >= 2 else { return false }
        nextConnectAt = now + delay
        return failures == 2
    }

    /// A connect worked, a connection proved itself, or the pool was
    /// drained: the next failure is a first one again.
    mutating func reset() {
        backoff.reset()
        nextConnectAt = nil
        lastError = nil
    }
}

/// One server's ``ConnectBackoff``, behind a lock of its own (see
/// ``ServerPool``). Every blocking call checks in a connection that may
/// reset it, so the common case (no failures) is one relaxed atomic load, no lock.
final class SharedConnectBackoff: Sendable {
    private let state = PlainMutex(ConnectBackoff())
    /// `true` while failures are counted; a stale read costs at most one
    /// lock taken for nothing, or a reset one call later.
    private let failing = Atomic<Bool>(false)

    /// See ``ConnectBackoff/refusal(at:)``.
    func refusal() -> RedisError? {
        guard failing.load(ordering: .relaxed) else { return nil }
        return state.withLock { $0.refusal() }
    }

    /// See ``ConnectBackoff/failed(_:at:)``.
    func failed(_ error: RedisError) -> Bool {
        state.withLock { backoff in
            let started = backoff.failed(error)
            failing.store(backoff.failures > 0, ordering: .relaxed)
            return started
        }
    }

    /// See ``ConnectBackoff/reset()``.
    func reset() {
        guard failing.load(ordering: .relaxed) else { return }
        state.withLock { backoff in
            backoff.reset()
            failing.store(false, ordering: .relaxed)
        }
    }
}
