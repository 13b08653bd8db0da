/// The decisions of a lock acquire loop, without I/O: when to try `SET NX`,
/// when to wait for a release signal, when to back off after a transient
/// failure, and when to give up. ``DistributedLock``'s blocking and `async`
/// acquires drive the same plan, one with threads, the other suspending.
///
/// - The first attempt is always made; none is made once the wait is over.
/// - A refused attempt waits for a release signal, at most the poll
///   interval (with jitter), cut short at the deadline.
/// - A transient failure (``RedisError/isTransient``) of a blocking acquire
///   backs off with jitter and marks the next attempt as following one of
///   unknown outcome, so a refusal is checked against the stored owner.
/// - Failures with no answer from Redis in between end the wait with the
///   last error once they have lasted ``RedisConfiguration/Retry/lockOutageLimit``,
///   or once the wait's deadline passed: a wait never reports "not
///   acquired" for a server it could not reach, and never waits forever for one.
struct AcquirePlan {
    enum Step {
        case attempt(afterDoubt: Bool)
        case waitForRelease(Duration)
        case sleep(Duration)
        /// The wait is over: not acquired.
        case giveUp
        /// The wait is over while Redis could not be reached: this error is the answer.
        case fail(RedisError)
    }

    let blocking: Bool
    let deadline: ContinuousClock.Instant?
    let pollInterval: Duration
    let outageLimit: Duration
    /// When the current run of failures began (`nil` after any answer from Redis).
    private var failingSince: ContinuousClock.Instant?
    /// The last failure, while no answer from Redis has come since: a wait
    /// that ends then ends with it, not with "not acquired".
    private var lastFailure: RedisError?
    private var backoff = Backoff()
    private var inDoubt = false
    private var attempted = false
    /// When an attempt first found the lock held, for the handoff metric.
    private(set) var contendedSince: ContinuousClock.Instant?

    init(blocking: Bool, deadline: ContinuousClock.Instant?, pollInterval: Duration, outageLimit: Duration = .seconds(30)) {
        self.blocking = blocking
        self.deadline = deadline
        self.pollInterval = pollInterval
        self.outageLimit = outageLimit
    }

    /// The next attempt, or `giveUp` once the wait is over.
    mutating func next() -> Step {
        if attempted, let deadline, ContinuousClock.now >= deadline { return lastFailure.map(Step.fail) ?? .giveUp }
        attempted = true
        defer { inDoubt = false }
        return .attempt(afterDoubt: inDoubt)
    }

    /// The attempt found the lock held by another owner.
    mutating func refused(telemetry: Telemetry) -> Step {
        backoff.reset()
        failingSince = nil
        lastFailure = nil
        if contendedSince == nil {
            contendedSince = .now
            telemetry.lock(.contended)
        }
        guard blocking else { return .giveUp }
        var pause = pollInterval * Double.random(in: 0.8...1.2)
        if let deadline {
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero { return .giveUp }
            pause = min(pause, left)
        }
        return .waitForRelease(pause)
    }

    /// The wait for a release signal ended (signal or timeout).
    mutating func waited() -> Step {
        backoff.reset()
        failingSince = nil
        lastFailure = nil
        return next()
    }

    /// An attempt (`attempting`) or a wait failed: back off when it is
    /// transient and the acquire blocks, rethrow otherwise.
    mutating func failed(_ error: RedisError, attempting: Bool) throws(RedisError) -> Step {
        guard blocking, error.isTransient else { throw error }
        // The SET may or may not have run: the next attempt that finds the
        // lock taken checks whether it is ours.
        if attempting { inDoubt = true }
        lastFailure = error
        let now = ContinuousClock.now
        let since = failingSince ?? now
        failingSince = since
        var delay = backoff.nextDelay()
        let outageLeft = outageLimit - since.duration(to: now)
        guard outageLeft > .zero else { throw error }
        delay = min(delay, outageLeft)
        if let deadline {
            let left = now.duration(to: deadline)
            guard left > .zero else { throw error }
            delay = min(delay, left)
        }
        return .sleep(delay)
    }
}
